"""Keys at rest and hostile listings (issue 9 items 10 and 13), over real HTTP.

Workspaces and clients hold keys as ``SecretStr`` and build headers only when sending:
``vars()`` shows no key, and pickling or copying is refused. A listed secret no URL can
address (``""``, whitespace) is skipped, never a reference to the list URL itself.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from cloudcreds import CloudClient, CloudWorkspace, ConfigurationError

from _helpers import (
    CANARY_API_KEY,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    json_server,
)

LIST = "/api/v1/sandboxes/sb-1/settings/secrets"


def everything_shown(obj: object) -> str:
    """What a debugger, ``vars()`` printer or locals-capturing reporter would show."""
    state = vars(obj)
    return repr(obj) + repr(state) + "".join(repr(value) for value in state.values())


# --------------------------------------------------------------------------- item 10


async def test_a_used_workspace_shows_no_key_in_its_state(account: Account) -> None:
    environ = {"SESSION_API_KEY": CANARY_SESSION_KEY}
    async with account.workspace(session_api_key=None, environ=environ) as from_environ:
        await from_environ.get_credentials()
        assert_no_canary(everything_shown(from_environ))
    async with account.workspace() as ws:  # keys given as arguments
        await ws.get_credentials()
        assert_no_canary(everything_shown(ws))


async def test_a_used_client_and_its_workspaces_show_no_key(account: Account) -> None:
    async with CloudClient(account.url, CANARY_API_KEY, retry=FAST_RETRY) as client:
        await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
        ws = client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)
        await ws.get_llm()
        assert_no_canary(everything_shown(client) + everything_shown(ws))


_COPIES: list[Callable[[Any], Any]] = [pickle.dumps, copy.copy, copy.deepcopy]


@pytest.mark.parametrize("make_copy", _COPIES, ids=["pickle", "copy", "deepcopy"])
async def test_workspaces_and_clients_refuse_pickling_and_copying(
    account: Account, make_copy: Callable[[Any], Any]
) -> None:
    async with (
        account.workspace() as ws,
        CloudClient(account.url, CANARY_API_KEY, retry=FAST_RETRY) as client,
    ):
        await ws.get_llm()  # a live pool, and keys that have been used
        await client.gather_credentials({"sb-1": CANARY_SESSION_KEY})
        pooled = client.workspace("sb-1", session_api_key=CANARY_SESSION_KEY)
        for obj in (ws, client, pooled):
            with pytest.raises(ConfigurationError, match="cannot be pickled or copied") as info:
                make_copy(obj)
            assert type(obj).__name__ in str(info.value)
            assert_no_canary(str(info.value) + repr(info.value.__context__))


# --------------------------------------------------------------------------- item 13


async def test_a_listed_empty_or_blank_name_is_skipped() -> None:
    names = ["", " ", "\t", "GITHUB_TOKEN", ".."]
    async with (
        json_server({LIST: {"secrets": [{"name": name} for name in names]}}) as url,
        CloudWorkspace(
            url, CANARY_API_KEY, "sb-1", session_api_key=CANARY_SESSION_KEY, retry=FAST_RETRY
        ) as ws,
    ):
        secrets = await ws.get_secrets()
    assert list(secrets) == ["GITHUB_TOKEN"]
    assert all(not ref.url.endswith(("/secrets", "/secrets/")) for ref in secrets.values())
