"""The LLM settings an agent inherits."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, SecretStr

from ._models import RedactedFrozenModel

__all__ = ["LLM"]


class LLM(RedactedFrozenModel):
    """The user's LLM settings: model, API key and base URL, plus any overrides.

    Frozen. The key is a :class:`pydantic.SecretStr`: ``repr``, ``str`` and the default
    ``model_dump`` never show it (JSON dumps show ``"**********"``). Extra keyword
    overrides given to :meth:`CloudWorkspace.get_llm` (``temperature=0.2``...) are kept
    as extra fields.

    Attributes:
        model: The model name, e.g. ``"anthropic/claude-sonnet-4-5"``.
        api_key: The LLM provider key, or ``None`` if the account has none.
        base_url: A custom endpoint (a proxy), or ``None`` for the provider's default.
    """

    model_config = ConfigDict(frozen=True, extra="allow", hide_input_in_errors=True)

    model: str
    api_key: SecretStr | None = None
    base_url: str | None = None

    def to_litellm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``litellm.completion`` and compatible clients.

        Returns:
            ``{"model", "api_key" (the raw key), "api_base"}`` without ``None`` values,
            plus the extra overrides (``temperature``...). The result holds the raw key:
            hand it to the client, do not log it.
        """
        kwargs: dict[str, Any] = {"model": self.model}
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        if self.base_url is not None:
            kwargs["api_base"] = self.base_url
        if self.model_extra:
            kwargs.update(self.model_extra)
        return kwargs
