"""cloudcreds: let an AI agent in a cloud sandbox inherit its user's credentials.

Async, concurrent, retried and leak-proof access to the OpenHands Cloud
credential-inheritance API: the user's LLM settings and references to their
secrets, resolved late and safe to serialize.

Example:
    >>> async with CloudWorkspace.from_env() as ws:  # doctest: +SKIP
    ...     creds = await ws.get_credentials()
"""

import types as _types

from ._client import CloudClient
from ._config import RetryBudget, RetryEvent, RetryPolicy, Timeouts
from ._credentials import Credentials
from ._errors import (
    APIStatusError,
    AuthenticationError,
    CloudConnectionError,
    CloudCredsError,
    CloudTimeoutError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    SecretResolutionError,
    ServerError,
    TooManyRedirectsError,
    UntrustedOriginError,
)
from ._models import LLM, MCPServer
from ._resolver import SecretResolver
from ._workspace import CloudWorkspace
from .secrets import (
    EnvHeaderLookupSecret,
    EnvSecret,
    LookupSecret,
    ResolveContext,
    SecretSource,
    StaticSecret,
    dump_secret_sources,
    load_secret_sources,
    parse_secret_source,
)

__all__ = [
    "LLM",
    "APIStatusError",
    "AuthenticationError",
    "CloudClient",
    "CloudConnectionError",
    "CloudCredsError",
    "CloudTimeoutError",
    "CloudWorkspace",
    "ConfigurationError",
    "Credentials",
    "EnvHeaderLookupSecret",
    "EnvSecret",
    "LookupSecret",
    "MCPServer",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResolveContext",
    "ResponseValidationError",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "SecretResolutionError",
    "SecretResolver",
    "SecretSource",
    "ServerError",
    "StaticSecret",
    "Timeouts",
    "TooManyRedirectsError",
    "UntrustedOriginError",
    "dump_secret_sources",
    "load_secret_sources",
    "parse_secret_source",
]


def _claim_public_names() -> None:
    """Make the public classes and functions report ``cloudcreds`` as their module.

    As httpx does: reprs, ``str(type(err))`` and tracebacks show
    ``cloudcreds.NotFoundError``, the name users import, not the private module that
    defines it; pickle finds them here too.
    """
    namespace = globals()
    for name in __all__:
        value = namespace[name]
        if isinstance(value, type | _types.FunctionType):
            value.__module__ = __name__


_claim_public_names()


def __getattr__(name: str) -> str:  # lazy `__version__`; no stray public names
    if name == "__version__":
        from importlib.metadata import version

        return version("cloudcreds")
    raise AttributeError(f"module 'cloudcreds' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, with the lazy ``__version__``."""
    return sorted({*globals(), "__version__"})
