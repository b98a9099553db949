"""Hand the inherited LLM settings to an LLM client (litellm or a compatible one).

Run it with ``python examples/litellm_kwargs.py``. :meth:`cloudcreds.LLM.to_litellm_kwargs`
returns ``{"model", "api_key", "api_base"}`` (no ``None`` values) plus any override
given to ``get_llm`` (``temperature``...), ready for ``litellm.completion(**kwargs)``.

The kwargs hold the raw key: give them to the client, never log them. This example
does not call a real LLM: ``fake_completion`` stands in for ``litellm.completion`` and
checks what it receives, and the kwargs are printed with the key masked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cloudcreds import CloudWorkspace
from cloudcreds.testing import FakeCloud


def fake_completion(**kwargs: Any) -> dict[str, Any]:
    """Stand-in for ``litellm.completion``: check the arguments, call nothing."""
    if not isinstance(kwargs.get("model"), str):
        raise TypeError("model is required")
    if not isinstance(kwargs.get("api_key"), str):
        raise TypeError("the key must arrive as a plain string")
    if "base_url" in kwargs:
        raise TypeError("litellm calls it api_base")
    if any(value is None for value in kwargs.values()):
        raise TypeError("None values should not be passed")
    return {"choices": [{"message": {"role": "assistant", "content": "(not called)"}}]}


def masked(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy fit for printing: the key replaced by a mask."""
    return {k: ("**********" if k == "api_key" else v) for k, v in kwargs.items()}


async def main() -> None:
    async with FakeCloud(seed=FakeCloud.demo_seed()) as cloud:
        sandbox = cloud.sandboxes["sb-demo"]
        api_key = cloud.users[sandbox.user_id].api_key
        async with CloudWorkspace(
            cloud.url, api_key, sandbox.id, session_api_key=sandbox.session_api_key
        ) as ws:
            # Overrides win over the account's settings; unknown ones are passed through.
            llm = await ws.get_llm(temperature=0.2, max_tokens=512)

        user_llm_key = cloud.users[sandbox.user_id].llm_api_key

    print(f"llm: {llm!r}")  # the key is a SecretStr: never in repr
    kwargs = llm.to_litellm_kwargs()
    print(f"raw key handed over: {'yes' if kwargs['api_key'] == user_llm_key else 'NO'}")
    reply = fake_completion(messages=[{"role": "user", "content": "Hello"}], **kwargs)
    print(f"litellm kwargs: {masked(kwargs)}")
    print(f"fake_completion accepted {len(kwargs)} kwargs; reply: {reply['choices'][0]['message']}")


if __name__ == "__main__":
    asyncio.run(main())
