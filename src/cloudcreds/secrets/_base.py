"""SecretSource, the plug-in base class, and the registry of kinds."""

from __future__ import annotations

import typing
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator
from pydantic_core import PydanticUndefined, to_jsonable_python

from .._config import MASK
from .._errors import ConfigurationError
from .._jsonsafe import loads_untrusted
from .._models import RedactedFrozenModel
from ._context import ResolveContext
from ._plugins import ENTRY_POINT_GROUP, load_plugins_for

__all__ = [
    "SecretSource",
    "dump_secret_sources",
    "known_kinds",
    "load_secret_sources",
    "parse_secret_source",
    "validation_message",
]

_REGISTRY: dict[str, type[SecretSource]] = {}
_ALIASES: dict[str, str] = {}  # an older name of a kind -> the kind


def known_kinds() -> list[str]:
    """The registered kinds, sorted (older names that still load are not listed)."""
    return sorted(_REGISTRY)


def _registered_by(kind: str) -> type[SecretSource] | None:
    """The class registered for ``kind`` or for the alias ``kind``."""
    return _REGISTRY.get(_ALIASES.get(kind, kind))


def validation_message(exc: ValidationError) -> str:
    """A ValidationError's locations and messages, never the input values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class SecretSource(RedactedFrozenModel):
    """Where a secret's value comes from: the plug-in base class.

    Subclass it with a new ``kind`` to add a source (a vault, a file...): the class
    registers itself, and :func:`parse_secret_source` / :func:`load_secret_sources`
    accept it from then on::

        class VaultSecret(SecretSource):
            kind: Literal["VaultSecret"] = "VaultSecret"
            path: str

            async def resolve(self, ctx: ResolveContext) -> str:
                return await ctx.fetch_text(f"https://vault.example.com/v1/{self.path}")

    A package can also advertise its kinds in the entry-point group
    ``cloudcreds.secret_sources`` (``VaultSecret = "cloudcreds_vault:VaultSecret"``):
    the first time data names a kind that is not registered, the installed plug-ins
    are imported, so no import is needed beforehand.

    Sources are frozen pydantic models. Secret fields should be :class:`SecretStr`:
    they are masked in ``repr``, ``str`` and default dumps. By convention the kind is
    the class name, as in OpenHands. A class may list older names of its kind in
    ``kind_aliases``: data naming them still loads (and dumps under the new name).

    Attributes:
        kind: The registered name of the source class.
        description: A human description (``"GitHub token"``), never a value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    kind: str
    description: str | None = None

    #: Whether resolving may send network requests (informative).
    uses_network: ClassVar[bool] = False
    #: Older names of this class's kind that still load (declared per class, not inherited).
    kind_aliases: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields["kind"]
        kind = field.default
        if kind is PydanticUndefined or kind is None:
            return  # an abstract intermediate base: nothing to register
        args = typing.get_args(field.annotation)
        if typing.get_origin(field.annotation) is not typing.Literal or args != (kind,):
            raise ConfigurationError(
                f'{cls.__qualname__} must declare its kind as `kind: Literal["{kind}"] = "{kind}"`'
            )
        aliases = cls.__dict__.get("kind_aliases", ())
        for name in (kind, *aliases):
            existing = _registered_by(name)
            if existing is not None and (
                existing.__module__ != cls.__module__ or existing.__qualname__ != cls.__qualname__
            ):
                raise ConfigurationError(
                    f"secret source kind {name!r} is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}; pick another kind "
                    f"(known kinds: {', '.join(known_kinds())})"
                )
        _REGISTRY[kind] = cls
        _ALIASES.update(dict.fromkeys(aliases, kind))

    @field_validator("kind", mode="before")
    @classmethod
    def _current_kind(cls, kind: Any) -> Any:
        """An older name of a kind (``"env"``) stands for the kind (``"EnvSecret"``)."""
        return _ALIASES.get(kind, kind) if isinstance(kind, str) else kind

    @abstractmethod
    async def resolve(self, ctx: ResolveContext) -> str:
        """Produce the secret's value. The plug-in hook.

        Args:
            ctx: The session, retry policy, timeouts and trusted origins to use.

        Raises:
            SecretResolutionError: The value could not be produced (or another
                :class:`CloudCredsError` subclass for HTTP failures).
        """

    def fingerprint(self, ctx: ResolveContext) -> bytes:
        """Check this source against ``ctx``'s rules; digest what else its value depends on.

        :class:`SecretResolver` calls it before it looks in its cache, and keys the cache
        on the source's fields plus this digest. The default: nothing outside the
        fields (``b""``). A source whose value depends on something it reads (an
        environment variable...) returns ``ctx.digest(that)``, so a new value misses the
        cache; a source that sends requests checks its origin here too, so a cached
        value is never served for a reference the rule refuses.

        Raises:
            SecretResolutionError: The source breaks the context's rules (for example
                :class:`UntrustedOriginError`); nothing was read or sent.
        """
        return b""

    async def get_value(self) -> str:
        """Resolve once with a default context (its own short-lived session).

        The default trust rule applies (see :class:`ResolveContext`): lookups only to
        ``CLOUDCREDS_TRUSTED_ORIGINS``, else the origin of ``OPENHANDS_CLOUD_API_URL``,
        else ``https://app.all-hands.dev``, plus the workspace's origin for a reference
        a workspace of this process returned. For many resolves, or caching, use a
        :class:`SecretResolver`.
        """
        async with ResolveContext() as ctx:
            return await self.resolve(ctx)


def _check_no_masks(source: SecretSource) -> None:
    """Refuse a source whose secret fields hold the mask: it was dumped redacted.

    Walks the field values with a stack, not recursion: data nested thousands deep
    (a user kind with an ``Any`` field) cannot raise ``RecursionError`` here.
    """
    stack: list[tuple[Any, str]] = [
        (getattr(source, name), name) for name in type(source).model_fields
    ]
    while stack:
        value, path = stack.pop()
        if isinstance(value, SecretStr):
            if value.get_secret_value() == MASK:
                raise ConfigurationError(
                    f"{source.kind} field {path} was masked when it was dumped ({MASK!r} "
                    "is not its value): dump it with expose_secrets=True (OpenHands: "
                    "model_dump(context={'expose_secrets': True}))"
                )
        elif isinstance(value, BaseModel):  # nested models of user-defined kinds
            stack.extend((getattr(value, f), f"{path}.{f}") for f in type(value).model_fields)
        elif isinstance(value, Mapping):
            stack.extend((item, f"{path}.{key}") for key, item in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))


def parse_secret_source(data: Mapping[str, Any] | SecretSource) -> SecretSource:
    """Build the registered source for ``data["kind"]``.

    Args:
        data: A mapping as produced by :func:`dump_secret_sources` (or a source, returned as is).

    Raises:
        ConfigurationError: No or an unknown ``kind`` (the message lists the known
            kinds), invalid fields (input values never shown), or a masked secret field.
    """
    if isinstance(data, SecretSource):
        return data
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            f"a secret source must be a mapping with a 'kind', got {type(data).__name__}"
        )
    kind = data.get("kind")
    cls = _registered_by(kind) if isinstance(kind, str) else None
    if cls is None and isinstance(kind, str):
        load_plugins_for(kind)  # an installed package may advertise it
        cls = _registered_by(kind)
    if cls is None:
        raise ConfigurationError(
            f"unknown secret source kind {kind!r}; known kinds: {', '.join(known_kinds())}"
            " (a custom kind must be imported before it is parsed, or advertised by an "
            f"installed package in the entry-point group {ENTRY_POINT_GROUP!r})"
        )
    try:
        source = cls.model_validate(data)
    except ValidationError as exc:
        # exc.errors() keeps the input (secret values): raise outside the handler so it
        # is not even the new error's __context__.
        message = validation_message(exc)
    else:
        _check_no_masks(source)
        return source
    raise ConfigurationError(f"invalid {kind} secret source: {message}")


def _expose(value: Any, expose: bool) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value() if expose else MASK
    if isinstance(value, dict):
        return {key: _expose(item, expose) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_expose(item, expose) for item in value]
    return value


def dump_secret_sources(
    sources: Mapping[str, SecretSource], *, expose_secrets: bool = False
) -> dict[str, dict[str, Any]]:
    """Turn ``{name: source}`` into JSON-able data that :func:`load_secret_sources` reads.

    Args:
        sources: The sources by secret name.
        expose_secrets: Write ``SecretStr`` fields in clear. By default they are written
            as ``"**********"``, and loading such a dump refuses them. An
            :class:`EnvHeaderLookupSecret` holds no secret, so it round-trips either way.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, source in sources.items():
        if not isinstance(source, SecretSource):
            raise ConfigurationError(
                f"{name!r} is not a SecretSource (got {type(source).__name__})"
            )
        raw = _expose(source.model_dump(mode="python"), expose_secrets)
        out[name] = to_jsonable_python(raw)
    return out


def load_secret_sources(data: Mapping[str, Any] | str | bytes) -> dict[str, SecretSource]:
    """Read what :func:`dump_secret_sources` wrote (a mapping, or its JSON text).

    Raises:
        ConfigurationError: Invalid JSON (also: bad UTF-8, nesting too deep, an integer
            too long), a non-mapping, or any entry that :func:`parse_secret_source`
            refuses (the message names the entry). Nothing else, whatever the input.
    """
    if isinstance(data, str | bytes):
        data = loads_untrusted(data, error=ConfigurationError, what="the secret sources' text")
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            f"secret sources must be a mapping of name to source, got {type(data).__name__}"
        )
    result: dict[str, SecretSource] = {}
    for name, item in data.items():
        try:
            result[str(name)] = parse_secret_source(item)
        except ConfigurationError as exc:
            raise ConfigurationError(f"secret {name!r}: {exc}") from None
    return result
