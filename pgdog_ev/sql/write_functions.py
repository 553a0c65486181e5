"""Functions whose call sends an otherwise read-only statement to the primary.

``SELECT nextval('s')`` is a SELECT, yet it writes (a sequence), and a replica rejects it. The
read/write split therefore needs a list of such functions; both the lexical fast path and the
parser-based slow path of route.py consult this one set, so they cannot drift apart.

A name is matched on its last part, whatever schema qualifies it: extension functions
(dblink_exec, lo_*) live in whichever schema they were installed into, and sending a user
function that merely shares a name to the primary costs only a little load. Functions not
listed here, including user functions that write, are treated as reads, as PgDog does.

Families and why each one is here:

- sequences: nextval/setval write; lastval/currval read the session's last nextval() value,
  which only exists on the server where nextval() ran, i.e. the primary.
- advisory locks (session and transaction level, try and unlock variants): a lock only
  excludes other clients if everyone takes it on the same server.
- pg_notify: NOTIFY is refused on a replica.
- set_config, setseed: not writes, but session state that later statements on the same server
  depend on; treating them as writes keeps the session on one server (the simple choice).
- txid_current, pg_current_xact_id: assign a transaction id, which fails during recovery.
- replication slots and origins, restore points, WAL switch, backups, config reload,
  promote: server administration that is either refused on a replica or meant for the primary.
- large objects: creating, importing, exporting, opening, writing, truncating, unlinking.
- dblink_exec: runs arbitrary SQL on a remote server, usually a write.
- pg_cancel_backend, pg_terminate_backend: address a backend pid, which only means something on
  the server that gave it out; the primary is where the session most likely is.
- install_sharded_sequence: PgDog's helper (schema ``pgdog``), kept for compatibility.
"""

from __future__ import annotations

WRITE_FUNCTIONS = frozenset(
    {
        # sequences
        "nextval", "setval", "lastval", "currval",
        # advisory locks
        "pg_advisory_lock", "pg_advisory_lock_shared",
        "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
        "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all",
        # notifications
        "pg_notify",
        # session state
        "set_config", "setseed",
        # transaction ids
        "txid_current", "pg_current_xact_id",
        # replication slots and origins
        "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
        "pg_drop_replication_slot", "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot", "pg_replication_slot_advance",
        "pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes",
        "pg_logical_emit_message",
        "pg_replication_origin_create", "pg_replication_origin_drop",
        "pg_replication_origin_advance", "pg_replication_origin_session_setup",
        "pg_replication_origin_session_reset", "pg_replication_origin_xact_setup",
        # server administration
        "pg_create_restore_point", "pg_switch_wal", "pg_reload_conf", "pg_rotate_logfile",
        "pg_promote", "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup",
        "pg_cancel_backend", "pg_terminate_backend", "pg_import_system_collations",
        # large objects
        "lo_create", "lo_creat", "lo_import", "lo_export", "lo_unlink", "lo_open", "lowrite",
        "lo_put", "lo_from_bytea", "lo_truncate", "lo_truncate64",
        # remote SQL
        "dblink_exec",
        # PgDog
        "install_sharded_sequence",
    }
)  # fmt: skip
