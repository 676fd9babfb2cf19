"""TOML configuration -> validated, frozen models, with errors that name the field path.

Shape (extend, don't rename):

    [motherduck]  api_url, admin_token_env, admin_token_secret_id, timeout, create_settle
    [state]       store = "file" | "dynamodb", path, keep_runs
    [defaults]    token_type, ttl, rotate_after, revoke_grace, window, spread, checks, ...
    [[accounts]]  username, overrides of any default, [[accounts.backends]]
    [audit]       path, fsync (the JSONL audit trail; docs/operations.md)
    [notifications]  on_success, on_failure: lists of webhook/slack targets

Every problem is reported as `accounts[0].backends[1].path: <what is wrong>`; unknown keys
are rejected. Backend tables are validated by the backend's own `Config` model.

This module only re-exports; each job has its own module (nothing imports back):

    load.py      reading the file and the TOML; the fast loader, else the reference one
    fast.py      the common valid file checked without pydantic (declines anything else)
    slow.py      the reference loader: every table through its pydantic model, all problems
    schema.py    the TOML tables as pydantic models, each key checked on its own
    values.py    the checks on single values both loaders run (one message each)
    rules.py     the rules across keys and tables (lease timing, checks, ttl)
    types.py     the plain frozen tables the rest of the tool reads (no pydantic)
    resolved.py  Config and AccountConfig: the frozen result the rest of the tool reads
    problems.py  pydantic errors -> `field.path: message` lines and the ConfigError
    keep.py      `[state] keep_runs` ("90d" or a count per account)

Importing this package imports no pydantic: only a file the fast loader declines does.

Import these names from `rotator.config`; the submodules import each other, never this one.
"""

from rotator.config.load import default_config_path, load_config, parse_config
from rotator.config.resolved import AccountConfig, Config
from rotator.config.types import (
    AuditSettings,
    MotherDuckSettings,
    Notifications,
    NotificationTarget,
    Policy,
    StateSettings,
)

__all__ = [
    "AccountConfig",
    "AuditSettings",
    "Config",
    "MotherDuckSettings",
    "NotificationTarget",
    "Notifications",
    "Policy",
    "StateSettings",
    "default_config_path",
    "load_config",
    "parse_config",
]
