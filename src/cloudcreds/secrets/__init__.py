"""Secret sources: references to secrets, resolved late, safe to serialize.

Built-in kinds, named after their classes as in OpenHands: :class:`StaticSecret`,
:class:`EnvSecret`, :class:`LookupSecret` and :class:`EnvHeaderLookupSecret` (their 0.1.0
names ``static``, ``env``, ``lookup``, ``env_header_lookup`` still load). Subclass
:class:`SecretSource` to add one.
"""

from ._base import (
    SecretSource,
    dump_secret_sources,
    known_kinds,
    load_secret_sources,
    parse_secret_source,
)
from ._context import ALLOWED_ENV_ENV, TRUSTED_ORIGINS_ENV, ResolveContext
from ._env import EnvSecret
from ._lookup import EnvHeaderLookupSecret, LookupSecret
from ._plugins import ENTRY_POINT_GROUP
from ._static import StaticSecret

__all__ = [
    "ALLOWED_ENV_ENV",
    "ENTRY_POINT_GROUP",
    "TRUSTED_ORIGINS_ENV",
    "EnvHeaderLookupSecret",
    "EnvSecret",
    "LookupSecret",
    "ResolveContext",
    "SecretSource",
    "StaticSecret",
    "dump_secret_sources",
    "known_kinds",
    "load_secret_sources",
    "parse_secret_source",
]
