"""The one settings path: argument > environment > default, and no empty value passes.

``cloudcreds._settings.read_settings`` is what ``CloudWorkspace.from_env``,
``cloudcreds.sync`` and the ``cloudcreds`` command call; the tests here drive it through
those three doors as well as directly.
"""

from __future__ import annotations

import pytest

from cloudcreds import CloudWorkspace, ConfigurationError, sync
from cloudcreds._config import DEFAULT_CLOUD_API_URL
from cloudcreds._settings import LIBRARY_NAMES, SettingNames, Settings, read_settings

from _helpers import CANARY_API_KEY, CANARY_SESSION_KEY, Account, assert_no_canary

ENV = {
    "OPENHANDS_CLOUD_API_URL": "https://env.example.com",
    "OPENHANDS_API_KEY": "env-api-key",
    "SANDBOX_ID": "env-sandbox",
    "SESSION_API_KEY": "env-session-key",
}


def plain(settings: Settings) -> tuple[str, str | None, str | None, str | None]:
    """The settings with the keys shown (test values only)."""
    api_key, session_key = settings.api_key, settings.session_key
    return (
        settings.url,
        None if api_key is None else api_key.get_secret_value(),
        settings.sandbox_id,
        None if session_key is None else session_key.get_secret_value(),
    )


def test_argument_wins_over_environment() -> None:
    settings = read_settings(
        url="https://arg.example.com",
        api_key="arg-api-key",
        sandbox_id="arg-sandbox",
        session_key="arg-session-key",
        environ=ENV,
    )
    assert plain(settings) == (
        "https://arg.example.com",
        "arg-api-key",
        "arg-sandbox",
        "arg-session-key",
    )


def test_environment_wins_over_default() -> None:
    assert plain(read_settings(environ=ENV)) == tuple(ENV.values())


def test_defaults_when_nothing_is_set() -> None:
    assert plain(read_settings(environ={})) == (DEFAULT_CLOUD_API_URL, None, None, None)


def test_os_environ_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_ID", "from-os-environ")
    assert read_settings().sandbox_id == "from-os-environ"


@pytest.mark.parametrize("empty", ["", " ", "\t\n"])
def test_an_empty_url_argument_is_an_error_naming_the_argument(empty: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^cloud_api_url= is empty"):
        read_settings(url=empty, environ=ENV)


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_url_variable_is_an_error_never_the_production_cloud(empty: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_settings(environ={"OPENHANDS_CLOUD_API_URL": empty})
    message = str(caught.value)
    assert "the environment variable OPENHANDS_CLOUD_API_URL is empty" in message
    assert f"unset OPENHANDS_CLOUD_API_URL to use {DEFAULT_CLOUD_API_URL}" in message


@pytest.mark.parametrize(
    ("setting", "variable"),
    [
        ("api_key", "OPENHANDS_API_KEY"),
        ("sandbox_id", "SANDBOX_ID"),
        ("session_key", "SESSION_API_KEY"),
    ],
)
def test_every_empty_variable_is_named(setting: str, variable: str) -> None:
    with pytest.raises(ConfigurationError, match=f"the environment variable {variable} is empty"):
        read_settings(environ={variable: " "})


def test_missing_required_settings_name_argument_and_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_settings(require=("api_key", "sandbox_id"), environ={})
    assert str(caught.value) == (
        "missing the user's cloud API key (api_key or OPENHANDS_API_KEY) "
        "and the sandbox id (sandbox_id or SANDBOX_ID)"
    )


def test_messages_use_the_callers_names() -> None:
    names = SettingNames("--url", "--api-key", "--sandbox-id", "--session-key")
    with pytest.raises(ConfigurationError, match=r"^--url is empty"):
        read_settings(url="", names=names, environ={})
    with pytest.raises(ConfigurationError, match=r"\(--sandbox-id or SANDBOX_ID\)"):
        read_settings(require=("sandbox_id",), names=names, environ={})


@pytest.mark.parametrize(
    ("setting", "header"), [("api_key", "Authorization"), ("session_key", "X-Session-API-Key")]
)
def test_a_key_that_cannot_be_a_header_names_the_real_header(setting: str, header: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_settings(**{setting: f"{CANARY_API_KEY}\n"}, environ={})  # type: ignore[arg-type]
    assert f"as header {header}" in str(caught.value)
    assert getattr(LIBRARY_NAMES, setting) in str(caught.value)
    assert_no_canary(str(caught.value))


# ----------------------------------------------------------------- through the three doors


def test_from_env_refuses_an_empty_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", " ")
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    monkeypatch.setenv("SANDBOX_ID", "sb-1")
    with pytest.raises(ConfigurationError, match="OPENHANDS_CLOUD_API_URL is empty"):
        CloudWorkspace.from_env()


def test_from_env_names_every_missing_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"OPENHANDS_API_KEY.*SANDBOX_ID"):
        CloudWorkspace.from_env()


async def test_from_env_reads_the_environment(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", account.url)
    monkeypatch.setenv("OPENHANDS_API_KEY", CANARY_API_KEY)
    monkeypatch.setenv("SANDBOX_ID", account.sandbox.id)
    async with CloudWorkspace.from_env(session_api_key=CANARY_SESSION_KEY) as ws:
        assert ws.cloud_api_url == account.url
        assert (await ws.get_llm()).model == "anthropic/claude-sonnet-4-5"


def test_sync_refuses_an_empty_url_argument_before_any_request(account: Account) -> None:
    with pytest.raises(ConfigurationError, match=r"^cloud_api_url= is empty"):
        sync.get_llm(" ", CANARY_API_KEY, account.sandbox.id, session_api_key=CANARY_SESSION_KEY)
    assert account.cloud.requests == []


def test_sync_refuses_an_empty_url_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_CLOUD_API_URL", "")
    with pytest.raises(ConfigurationError, match="OPENHANDS_CLOUD_API_URL is empty"):
        sync.get_secrets(api_key=CANARY_API_KEY, sandbox_id="sb-1")
