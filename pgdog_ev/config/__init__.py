"""pgdog-ev configuration: PgDog's pgdog.toml / users.toml, database URLs and PGDOG_* variables.

Everything the rest of the proxy needs is re-exported here; the submodules hold one concept each
(schema, kinds, loader, url, env, crosscheck, digest, general_set).
"""

from .errors import ConfigError
from .loader import load_config, load_config_text
from .model import AdminConfig, Config, DatabaseEntry, General, UserEntry
from .pool_settings import PoolSettings

__all__ = [
    "AdminConfig",
    "Config",
    "ConfigError",
    "DatabaseEntry",
    "General",
    "PoolSettings",
    "UserEntry",
    "load_config",
    "load_config_text",
]
