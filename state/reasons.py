"""Why a machine changed state: the ``a`` field of a TRANSITION event.

One enum for every machine keeps the timeline readable: ``reason=AUTH_FAILED``
means the same thing whichever machine printed it.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class Reason(IntEnum):
    NONE = 0
    STARTUP = 1
    SSL_REFUSED = 2
    AUTH_OK = 3
    AUTH_FAILED = 4
    LOGIN_DONE = 5
    QUERY = 6
    CHECKOUT = 7
    CHECKOUT_TIMEOUT = 8
    CHECKIN = 9
    TRANSACTION_DONE = 10
    CLIENT_TERMINATE = 11
    CLIENT_EOF = 12
    PROTOCOL_VIOLATION = 13
    SERVER_LOST = 14
    CONNECTED = 15
    CONNECT_FAILED = 16
    SERVER_READY = 17
    ROLLBACK = 18
    CLEANED = 19
    IDLE_TIMEOUT = 20
    LIFETIME = 21
    LOGIN_TIMEOUT = 22
    QUERY_TIMEOUT = 23
    CLIENT_IDLE_TIMEOUT = 24
    SHUTDOWN = 25
    UNKNOWN_DATABASE = 26
    SERVER_ERROR = 27
    OUT_OF_SYNC = 28
    CANCEL_REQUEST = 29
    POOL_CLOSED = 30
    TOO_MANY_CLIENTS = 31
    CLEANUP_FAILED = 32
    RELOAD = 33
    PAUSE = 34
    RESUME = 35
    WAIT = 36
    PINNED = 37
    LOCAL_ANSWER = 38
    IDLE_IN_TRANSACTION_TIMEOUT = 39
    CANCELED = 40
    REFUSED = 41
    # Admin console (numbered apart so other additions do not collide).
    ADMIN_COMMAND = 60
    MAINTENANCE = 61
    RECONNECT = 62
    ADMIN_SET = 63
    # Input capture (NOTE records of the daemon; re-execution ignores them).
    CAPTURE_STARTED = 64
    CAPTURE_FULL = 65
    CAPTURE_FAILED = 66
    # TLS (numbered apart too).
    TLS_ACCEPTED = 70
    TLS_REQUIRED = 71
    # Replicas: health checks, bans, roles and routing (numbered apart as well).
    HEALTHCHECK = 80
    HEALTHCHECK_OK = 81
    HEALTHCHECK_FAILED = 82
    HEALTHCHECK_TIMEOUT = 83
    BAN_MANUAL = 84
    BAN_CONNECT_ERROR = 85
    BAN_HEALTHCHECK = 86
    BAN_LAG = 87
    UNBAN_EXPIRED = 88
    UNBAN_MANUAL = 89
    UNBAN_ALL_BANNED = 90
    ROLE_PRIMARY = 91
    ROLE_REPLICA = 92
    ROLE_LOST = 93
    LSN_CHECK = 94
    LSN_CHECK_FAILED = 95
    ROUTE_WRITE = 96
    ROUTE_READ = 97
    ROUTE_TRANSACTION = 98
    ROUTE_HINT = 99
    ROUTE_OVERRIDE = 100
    ROUTE_SESSION = 101
    PRIMARY_WAIT = 102
    # require_healthcheck_on_discovery: a host a reload added waits out of the read rotation until
    # its first health check passes.
    BAN_DISCOVERY = 103
    UNBAN_HEALTHCHECK = 104
    # Faults the simulator injected (NOTE records of machine SIM; b = the host's index).
    FAULT_CRASH = 120
    FAULT_RESTART = 121
    FAULT_POWER_OFF = 122
    FAULT_POWER_ON = 123
    FAULT_HANG = 124
    FAULT_RESUME = 125
    FAULT_LAG = 126
    FAULT_LAG_END = 127
    FAULT_REPLAY_PAUSE = 128
    FAULT_REPLAY_RESUME = 129
    FAULT_PARTITION = 130
    FAULT_HEAL = 131
    FAULT_STALL = 132
    FAULT_RESET = 133
    FAULT_HALF_CLOSE = 134
    FAULT_PROMOTE = 135
    FAULT_REJOIN = 136
    FAULT_SLOW = 137
    FAULT_SLOW_END = 138
    SIM_WORKLOAD_STOP = 139
    SIM_END = 140
    # A fault numbered after the SIM_ records (values never change: logs on disk carry them).
    FAULT_ADD_HOST = 141
