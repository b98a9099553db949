"""EnvSecret: a value read from the environment at resolve time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import field_validator

from .._errors import SecretResolutionError
from ._base import SecretSource
from ._context import ResolveContext, check_env_name

__all__ = ["EnvSecret", "check_env_name", "read_env"]


def read_env(environ: Mapping[str, str], name: str, *, purpose: str) -> str:
    """Read ``environ[name]`` now; a missing or empty variable is an error naming it.

    Raises:
        SecretResolutionError: The variable is not set or empty (its name, never a value).
    """
    value = environ.get(name)
    if not value:
        raise SecretResolutionError(
            f"environment variable {name} is {'empty' if value == '' else 'not set'}; "
            f"it should hold {purpose}"
        )
    return value


class EnvSecret(SecretSource):
    """A secret read from an environment variable when resolved, never earlier.

    The variable is read from the context's ``environ`` (:data:`os.environ` unless the
    :class:`ResolveContext` or :class:`SecretResolver` was given another mapping).

    Attributes:
        env: The variable's name.
    """

    kind: Literal["EnvSecret"] = "EnvSecret"
    kind_aliases: ClassVar[tuple[str, ...]] = ("env",)  # its name in 0.1.0
    env: str

    @field_validator("env")
    @classmethod
    def _valid_env(cls, env: str) -> str:
        return check_env_name(env)

    def fingerprint(self, ctx: ResolveContext) -> bytes:
        """A keyed digest of the variable's current value: a new value misses the cache."""
        return ctx.digest(ctx.environ.get(self.env))

    async def resolve(self, ctx: ResolveContext) -> str:
        """Return ``ctx.environ[env]``.

        Raises:
            SecretResolutionError: The variable is not set (the message names it).
        """
        value = ctx.environ.get(self.env)
        if value is None:
            raise SecretResolutionError(f"environment variable {self.env} is not set")
        return value
