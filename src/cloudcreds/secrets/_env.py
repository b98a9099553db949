"""EnvSecret: a value read from the environment at resolve time."""

from __future__ import annotations

import os
from typing import ClassVar, Literal

from pydantic import field_validator

from .._errors import SecretResolutionError
from ._base import SecretSource
from ._context import ResolveContext

__all__ = ["EnvSecret", "check_env_name", "read_env"]


def check_env_name(name: str) -> str:
    """Validate an environment variable name (used by field validators)."""
    if not name or "=" in name or "\x00" in name:
        raise ValueError("must be a non-empty environment variable name without '=' or NUL")
    return name


def read_env(name: str, *, purpose: str) -> str:
    """Read ``os.environ[name]`` now; a missing or empty variable is an error naming it."""
    value = os.environ.get(name)
    if not value:
        raise SecretResolutionError(
            f"environment variable {name} is {'empty' if value == '' else 'not set'}; "
            f"it should hold {purpose}"
        )
    return value


class EnvSecret(SecretSource):
    """A secret read from an environment variable when resolved, never earlier.

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

    async def resolve(self, ctx: ResolveContext) -> str:
        """Return ``os.environ[env]``.

        Raises:
            SecretResolutionError: The variable is not set (the message names it).
        """
        value = os.environ.get(self.env)
        if value is None:
            raise SecretResolutionError(f"environment variable {self.env} is not set")
        return value
