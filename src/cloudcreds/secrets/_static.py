"""StaticSecret: a value held in memory."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import SecretStr

from ._base import SecretSource
from ._context import ResolveContext

__all__ = ["StaticSecret"]


class StaticSecret(SecretSource):
    """A secret whose value is held here (masked in repr and default dumps).

    Attributes:
        value: The value.
    """

    kind: Literal["StaticSecret"] = "StaticSecret"
    kind_aliases: ClassVar[tuple[str, ...]] = ("static",)  # its name in 0.1.0
    value: SecretStr

    async def resolve(self, ctx: ResolveContext) -> str:
        """Return the value."""
        return self.value.get_secret_value()
