"""Everything the sessions need to find each other: pools, logins, cancel keys.

Built from a Config and rebuilt on reload. A pool survives a reload when its
key (user, database, host, port, shard, role) is unchanged; its settings are
swapped in place so pool-size and timeout changes apply to live pools, while
pools whose key disappeared are closed once their servers come back.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from pgdog_ev.auth.scram import ScramVerifier
from pgdog_ev.config import Config
from pgdog_ev.proxy.scheduler import ReactorScheduler
from pgdog_ev.proxy.server_conn import ServerConnection
from pgdog_ev.sql import default_cache
from pgdog_ev.sql.route import default_route_cache
from pgdog_ev.tls import TlsContexts, build_tls, rebuild_tls
from pgdog_ev.wire import backend as be
from pgdog_ev.wire.errors import PROTOCOL_VIOLATION, TOO_MANY_CONNECTIONS
from state.client import ClientSession, Login
from state.cluster import Cluster
from state.events import EventLog, Kind, Machine
from state.pool import Pool, PoolKey
from state.prepared import PreparedRegistry
from state.reasons import Reason
from state.server import ServerSession

if TYPE_CHECKING:
    from loop.reactor import Reactor
    from pgdog_ev.admin.console import AdminConsole
    from pgdog_ev.capture.recorder import InputCapture
    from pgdog_ev.config import DatabaseEntry, UserEntry

log = logging.getLogger("pgdog_ev.directory")


class Credentials:
    """A user's secrets in the forms each auth method needs, derived once."""

    def __init__(self, user: UserEntry, entropy: Callable[[int], bytes]) -> None:
        self.passwords: tuple[str, ...] = tuple(user.passwords)
        self.verifier: ScramVerifier | None = None
        self.md5_stored: str | None = None
        hashed = user.password_hash
        if hashed and hashed.startswith("SCRAM-SHA-256$"):
            self.verifier = ScramVerifier.parse(hashed)
        elif hashed and hashed.startswith("md5"):
            self.md5_stored = hashed
        if self.verifier is None and self.passwords:
            # PBKDF2 is slow on purpose: pay it once per user, not per login.
            self.verifier = ScramVerifier.from_password(self.passwords[0], entropy(16))


def cluster_hosts(hosts: list[DatabaseEntry]) -> list[DatabaseEntry]:
    """The hosts of the first shard (sharding routes across shards in its own layer)."""
    shard = min(entry.shard for entry in hosts)
    return [entry for entry in hosts if entry.shard == shard]


def pool_keys(config: Config) -> set[PoolKey]:
    """The key of every pool ``config`` makes. The supervisor keeps those its workers have had
    since the start (see Directory's ``settled``)."""
    keys: set[PoolKey] = set()
    for name in config.database_names():
        for entry in cluster_hosts(list(config.hosts(name))):
            for user in config.users_for(name):
                keys.add(PoolKey(user.name, name, entry.host, entry.port, entry.shard, entry.role))
    return keys


class Directory:
    """The proxy's registry of pools and clients.

    ``settled``: for a worker the supervisor restarts, the pools the daemon has run since its
    start. The worker's first configuration is then taken as a reload of those: a host a reload
    added while the worker was away is still "discovered" (require_healthcheck_on_discovery) in
    the new process, as it was in the others when it came.
    """

    def __init__(
        self, config: Config, reactor: Reactor, log_: EventLog, entropy: Callable[[int], bytes],
        settled: set[PoolKey] | None = None,
    ) -> None:
        self.reactor = reactor
        self.log = log_
        self.entropy = entropy
        self.scheduler = ReactorScheduler(reactor)
        self.config = config
        self.pools: dict[PoolKey, Pool] = {}
        # One cluster per (database, user): its pools, one per host, in file order.
        self.clusters: dict[tuple[str, str], Cluster] = {}
        self._next_cluster = 1
        self.logins: dict[tuple[str, str], Login] = {}
        self.clients: dict[int, ClientSession] = {}
        self.statements = PreparedRegistry()
        self.auth_failures = 0
        self._accepted = 0
        self._next_client = 1
        # Worker processes ([general] workers): client ids encode the worker (id % count), so a
        # CancelRequest tells which worker owns its key; one not ours goes to ``forward_cancel``.
        self.worker_index = 0
        self.worker_count = 1
        self.forward_cancel: Callable[[int, int, bytes], None] | None = None
        self.cancels_forwarded = 0
        self.cancels_received = 0
        self._next_server = 1
        self._next_pool = 1
        self._credentials: dict[tuple[str, str], tuple[tuple[str, ...], str | None, Credentials]] = {}
        self._admin_verifier: tuple[str, ScramVerifier] | None = None
        self._admin_login: Login | None = None
        # Logged-in clients per database and per (user, database), for the client limits.
        self._db_clients: dict[str, int] = {}
        self._user_clients: dict[tuple[str, str], int] = {}
        self._admitted: set[int] = set()
        self._admitted_admin: set[int] = set()
        self.console: AdminConsole | None = None
        # The daemon's input capture (capture_inputs), told when a connection switches to TLS.
        self.capture: InputCapture | None = None
        # SSLContexts for new connections. A bad TLS file is a ConfigError here, at start.
        self.tls: TlsContexts = build_tls(config.general, config.config_path)
        self._applied = False
        self._settled = settled
        self.apply(config)

    # -- building ---------------------------------------------------------------

    def _credentials_for(self, user: UserEntry) -> Credentials:
        key = (user.name, user.database)
        fingerprint = (tuple(user.passwords), user.password_hash)
        cached = self._credentials.get(key)
        if cached is not None and cached[:2] == fingerprint:
            return cached[2]
        creds = Credentials(user, self.entropy)
        self._credentials[key] = (fingerprint[0], fingerprint[1], creds)
        return creds

    def apply(self, config: Config) -> None:
        """Install ``config``: keep matching pools, add new ones, close the rest."""
        now = self.reactor.now()
        if config is not self.config:
            # A reload: read the certificate files again (keeping the old contexts if they fail).
            self.tls = rebuild_tls(self.tls, config.general, config.config_path)
        # Pools a reload adds are "discovered" (require_healthcheck_on_discovery); those of the
        # first configuration are simply the hosts.
        reload = self._applied
        self._applied = True
        settled = None if reload else self._settled
        self._settled = None
        settled_clusters = {(key.database, key.user) for key in settled} if settled is not None else set()
        self.config = config
        auth_type = config.general.auth_type
        wanted: dict[PoolKey, Pool] = {}
        logins: dict[tuple[str, str], Login] = {}
        clusters: dict[tuple[str, str], Cluster] = {}
        for name in config.database_names():
            hosts = cluster_hosts(list(config.hosts(name)))
            for user in config.users_for(name):
                members: list[Pool] = []
                added: list[Pool] = []
                for entry in hosts:
                    settings = config.pool_settings(user, entry)
                    key = PoolKey(user.name, name, entry.host, entry.port, entry.shard, entry.role)
                    pool = self.pools.get(key) or wanted.get(key)
                    if pool is None or pool.state.name == "CLOSED":
                        pool = Pool(
                            self._next_pool, key, settings, self, self.log, self.scheduler,
                            config.general.max_message_size,
                        )
                        self._next_pool += 1
                        pool.start(now)
                        added.append(pool)
                    else:
                        pool.settings = settings
                        pool.max_message_size = config.general.max_message_size
                    wanted[key] = pool
                    if pool not in members:
                        members.append(pool)
                cluster = self.clusters.get((name, user.name))
                fresh = cluster is None or cluster.closed
                if fresh:
                    cluster = Cluster(self._next_cluster, user.name, name, members, config.general, self.log,
                                      self.scheduler, self.entropy)
                    self._next_cluster += 1
                else:
                    cluster.set_pools(now, members, config.general)
                cluster.start(now)
                if reload and added and not fresh:
                    # A database or user the reload brings in is new as a whole: every host of it
                    # is as unproven as every other, and banning them all would only be undone
                    # by the first read (every host banned: the bans go).
                    cluster.discovered(now, added)
                elif settled is not None and added and (name, user.name) in settled_clusters:
                    # A restarted worker: the hosts the daemon ran before are known, the others
                    # came with a reload since its start.
                    cluster.discovered(now, [p for p in added if p.key not in settled])
                clusters[(name, user.name)] = cluster
                pool = cluster.login_pool()
                creds = self._credentials_for(user)
                logins[(name, user.name)] = Login(
                    pool=pool,
                    cluster=cluster,
                    user=user.name,
                    database=name,
                    auth_type=auth_type,
                    pooler_mode=settings.pooler_mode,
                    passwords=creds.passwords,
                    verifier=creds.verifier,
                    md5_stored=creds.md5_stored,
                )
        for key, pool in self.pools.items():
            if key not in wanted:
                pool.close(now, Reason.RELOAD)
        for ckey, old in self.clusters.items():
            if clusters.get(ckey) is not old:
                old.close(now)
        self.pools = wanted
        self.clusters = clusters
        self.logins = logins
        self._admin_login = self._make_admin_login(config)
        default_cache().resize(config.general.query_cache_limit)
        default_route_cache().resize(config.general.query_cache_limit)

    def _make_admin_login(self, config: Config) -> Login | None:
        admin = config.admin
        if not admin.password or admin.password_generated:
            return None  # nobody knows the generated password: the console stays locked
        cached = self._admin_verifier
        if cached is None or cached[0] != admin.password:
            # PBKDF2 once per password, as for users.
            cached = (admin.password, ScramVerifier.from_password(admin.password, self.entropy(16)))
            self._admin_verifier = cached
        return Login(pool=None, user=admin.user, database=admin.name,
                     auth_type=config.general.auth_type, pooler_mode="session",
                     passwords=(admin.password,), verifier=cached[1], admin=True)

    # -- the Directory interface for sessions ------------------------------------

    @property
    def auth_type(self) -> str:
        return self.config.general.auth_type

    def has_database(self, name: str) -> bool:
        return name == self.config.admin.name or name in self.config.database_names()

    def lookup(self, database: str, user: str) -> Login | None:
        if database == self.config.admin.name:
            login = self._admin_login
            return login if login is not None and user == login.user else None
        return self.logins.get((database, user))

    def admit(self, client: ClientSession) -> tuple[str, str] | None:
        """Count a client that just authenticated against its database's and user's client limits;
        (SQLSTATE, message) when it is one too many."""
        g = self.config.general
        if client.admin:
            self._admitted_admin.add(client.id)
            self._log_login(client)
            return None
        db_key, user_key = client.database, (client.user, client.database)
        db_limit = user_limit = None
        for entry in self.config.hosts(client.database):
            if entry.max_db_client_connections is not None:
                db_limit = entry.max_db_client_connections
        if db_limit is None:
            db_limit = g.max_db_client_connections
        user = self.config.user(client.user, client.database)
        if user is not None and user.max_user_client_connections is not None:
            user_limit = user.max_user_client_connections
        if user_limit is None:
            user_limit = g.max_user_client_connections
        if db_limit is not None and self._db_clients.get(db_key, 0) >= db_limit:
            return TOO_MANY_CONNECTIONS, (f'too many client connections for database "{client.database}" '
                                          f"(max_db_client_connections = {db_limit})")
        if user_limit is not None and self._user_clients.get(user_key, 0) >= user_limit:
            return TOO_MANY_CONNECTIONS, (f'too many client connections for user "{client.user}" on database '
                                          f'"{client.database}" (max_user_client_connections = {user_limit})')
        self._db_clients[db_key] = self._db_clients.get(db_key, 0) + 1
        self._user_clients[user_key] = self._user_clients.get(user_key, 0) + 1
        self._admitted.add(client.id)
        self._log_login(client)
        return None

    def _log_login(self, client: ClientSession) -> None:
        if self.config.general.log_connections:
            log.info("client %d logged in: user %r database %r from %s", client.id, client.user, client.database,
                     client.peer, extra={"client_id": client.id, "user": client.user, "database": client.database,
                                         "addr": client.peer, "application_name": client.application_name})

    def _log_logout(self, client: ClientSession) -> None:
        if self.config.general.log_disconnections:
            seconds = self.reactor.now() - client.connected_at
            reason = client.close_reason.name.lower() if client.close_reason is not None else "closed"
            log.info("client %d closed (%s) after %.3f s: user %r database %r from %s", client.id, reason, seconds,
                     client.user, client.database, client.peer,
                     extra={"client_id": client.id, "user": client.user, "database": client.database,
                            "addr": client.peer, "reason": reason, "queries": client.queries})

    def next_client_id(self) -> int:
        # With one process (count 1, index 0) this is 1, 2, 3, ... as it always was.
        cid = self._next_client * self.worker_count + self.worker_index
        self._next_client += 1
        return cid

    def accepted_clients(self) -> int:
        """Clients counted against max_client_conn (refused ones are not)."""
        return self._accepted

    def client_opened(self, client: ClientSession) -> None:
        self.clients[client.id] = client
        if client.reject is None:
            self._accepted += 1

    def client_closed(self, client: ClientSession) -> None:
        if self.clients.pop(client.id, None) is not None and client.reject is None:
            self._accepted -= 1
        if client.id in self._admitted_admin:
            self._admitted_admin.discard(client.id)
            self._log_logout(client)
        if client.id in self._admitted:
            self._admitted.discard(client.id)
            self._log_logout(client)
            db_key, user_key = client.database, (client.user, client.database)
            self._db_clients[db_key] -= 1
            self._user_clients[user_key] -= 1

    def auth_failed(self, client: ClientSession, user: str, database: str) -> None:
        self.auth_failures += 1
        log.warning(
            "authentication failed for user %r database %r from %s", user, database, client.peer,
            extra={"user": user, "database": database, "addr": client.peer, "client_id": client.id},
        )

    def cancel(self, now: float, pid: int, secret: bytes) -> None:
        """Forward a client's CancelRequest to the server running its query, if the key matches.

        With several workers the kernel may have handed the CancelRequest to a worker other than
        the client's; that one passes it on, and the owner runs it as if it had arrived there.
        """
        if self.worker_count > 1 and self.forward_cancel is not None:
            owner = pid % self.worker_count
            if owner != self.worker_index:
                self.cancels_forwarded += 1
                self.forward_cancel(owner, pid, secret)
                return
        client = self.clients.get(pid)
        if client is None or not client.key_secret or not hmac.compare_digest(client.key_secret, secret):
            self.log.emit(now, Kind.NOTE, Machine.CLIENT, pid, 0, 0, Reason.CANCEL_REQUEST, 1)
            return
        client.cancel_request(now)

    def cancel_from_worker(self, now: float, pid: int, secret: bytes) -> None:
        """A CancelRequest another worker received for one of our clients."""
        self.cancels_received += 1
        if pid % self.worker_count != self.worker_index:
            return  # not ours either: never forward twice
        self.cancel(now, pid, secret)

    # -- the admin console -------------------------------------------------------

    def admin_parameters(self) -> dict[str, str]:
        return self.console.parameters() if self.console is not None else {}

    def admin_query(self, now: float, client: ClientSession, text: str) -> bytes | None:
        if self.console is None:
            return be.error_response(PROTOCOL_VIOLATION, "the admin console is not available")
        return self.console.query(now, client, text)

    def admin_cancel(self, now: float, client: ClientSession) -> None:
        if self.console is not None:
            self.console.cancel(now, client)

    def pool_drained(self, now: float, pool: Pool) -> None:
        if self.console is not None:
            self.console.pool_drained(now, pool)

    # -- the PoolIO interface -------------------------------------------------------

    def open_server(self, pool: Pool) -> ServerSession:
        sid = self._next_server
        self._next_server += 1
        return ServerConnection(self, pool, sid).session

    # -- shutdown -----------------------------------------------------------------

    def close_pools(self, now: float) -> None:
        for cluster in self.clusters.values():
            cluster.close(now)
        for pool in self.pools.values():
            pool.close(now, Reason.SHUTDOWN)
