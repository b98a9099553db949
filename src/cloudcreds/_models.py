"""The base of the library's frozen pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["RedactedFrozenModel"]


class RedactedFrozenModel(BaseModel):
    """A frozen model whose validation errors never show the input.

    ``hide_input_in_errors`` covers validation, but pydantic's frozen-instance error
    still shows the value someone tried to assign (``source.value = token``): that
    error is re-raised here without it, outside the handler so that the original is
    not even its ``__context__``.
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
            return
        except ValidationError as exc:
            title, errors = exc.title, exc.errors()
        raise ValidationError.from_exception_data(
            title,
            [{"type": err["type"], "loc": err["loc"], "input": None} for err in errors],
            hide_input=True,
        )
