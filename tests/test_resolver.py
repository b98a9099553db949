"""SecretResolver: single-flight, cache, limits, trust and cancellation, against FakeCloud."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from cloudcreds import (
    AuthenticationError,
    CloudCredsError,
    ConfigurationError,
    EnvHeaderLookupSecret,
    EnvSecret,
    LookupSecret,
    NotFoundError,
    ResolveContext,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    SecretResolutionError,
    SecretResolver,
    SecretSource,
    ServerError,
    StaticSecret,
    UntrustedOriginError,
    dump_secret_sources,
)
from cloudcreds._resolver import _cache_key
from cloudcreds.testing import Fault

from _helpers import (
    CANARY_SECRET,
    CANARY_SESSION_KEY,
    FAST_RETRY,
    Account,
    assert_no_canary,
    closed_port,
    wait_until,
)

GITHUB = "GITHUB_TOKEN"
OPENAI = "OPENAI_KEY"
SECRETS = "/api/v1/sandboxes/sb-1/settings/secrets"


def path(name: str) -> str:
    return f"{SECRETS}/{name}"


def env_ref(account: Account, name: str = GITHUB) -> EnvHeaderLookupSecret:
    """A fresh reference as CloudWorkspace.get_secrets() makes them (no key inside)."""
    return EnvHeaderLookupSecret(
        url=account.url + path(name), env_headers={"X-Session-API-Key": "SESSION_API_KEY"}
    )


def lookup(account: Account, name: str = GITHUB, key: str = CANARY_SESSION_KEY) -> LookupSecret:
    """A fresh reference holding the session key itself."""
    return LookupSecret(url=account.url + path(name), headers={"X-Session-API-Key": SecretStr(key)})


@pytest.fixture(autouse=True)
def trust_the_fake_cloud(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the FakeCloud's loopback origin, as an agent server's configuration would.

    These tests resolve references built by hand (not returned by a workspace of this
    process): deny by default refuses them unless their origin is configured.
    """
    if "account" in request.fixturenames:
        account: Account = request.getfixturevalue("account")
        monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", account.url)


@pytest.fixture
async def resolver() -> AsyncIterator[SecretResolver]:
    async with SecretResolver(retry=FAST_RETRY) as r:
        yield r


class CustomBugError(Exception):
    """Stands for a bug inside a user's own source."""


class ExplodingSecret(SecretSource):
    """A custom source whose resolve() has a bug."""

    kind: Literal["test-resolver-exploding"] = "test-resolver-exploding"
    message: str = "bug in a custom source"

    async def resolve(self, ctx: ResolveContext) -> str:
        raise CustomBugError(self.message)


class NotAStringSecret(SecretSource):
    """A custom source that breaks the contract by returning bytes."""

    kind: Literal["test-resolver-bytes"] = "test-resolver-bytes"

    async def resolve(self, ctx: ResolveContext) -> str:
        return b"bytes"  # type: ignore[return-value]


# --------------------------------------------------------------------------- single-flight


async def test_concurrent_equal_sources_share_one_fetch(
    account: Account, resolver: SecretResolver, sandbox_env: None
) -> None:
    account.cloud.set_latency(0.05)
    sources: list[Any] = [env_ref(account) for _ in range(40)]
    sources += [env_ref(account).model_dump() for _ in range(10)]  # dumped form: same source
    assert len({id(s) for s in sources}) == 50

    values = await asyncio.gather(*(resolver.resolve(s) for s in sources))

    assert len(values) == 50
    assert all(value == CANARY_SECRET for value in values)
    assert account.cloud.count(path(GITHUB)) == 1
    assert len(account.cloud.requests) == 1


async def test_different_sources_are_fetched_separately(
    account: Account, resolver: SecretResolver
) -> None:
    account.cloud.set_latency(0.05)
    github, openai = await asyncio.gather(
        resolver.resolve(lookup(account, GITHUB)), resolver.resolve(lookup(account, OPENAI))
    )
    assert github == CANARY_SECRET
    assert openai == "sk-other-value"
    assert account.cloud.count(path(GITHUB)) == 1
    assert account.cloud.count(path(OPENAI)) == 1


async def test_equality_includes_secret_values(account: Account) -> None:
    account.cloud.set_latency(0.05)
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        one, two = await asyncio.gather(
            resolver.resolve(StaticSecret(value=SecretStr("value-one"))),
            resolver.resolve(StaticSecret(value=SecretStr("value-two"))),
        )
        assert (one, two) == ("value-one", "value-two")
        # Cached, still by value.
        assert await resolver.resolve(StaticSecret(value=SecretStr("value-two"))) == "value-two"

        good, bad = await asyncio.gather(
            resolver.resolve(lookup(account)),
            resolver.resolve(lookup(account, key="some-other-session-key")),
            return_exceptions=True,
        )
        assert good == CANARY_SECRET
        assert isinstance(bad, AuthenticationError)
        assert account.cloud.count(path(GITHUB)) == 2

        # Same headers, same values: one fetch (cached after the first request).
        await asyncio.gather(resolver.resolve(lookup(account)), resolver.resolve(lookup(account)))
        assert account.cloud.count(path(GITHUB)) == 2


# --------------------------------------------------------------------------- cache


async def test_cache_ttl_reuses_values(account: Account) -> None:
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert await resolver.resolve(lookup(account).model_dump()) == CANARY_SECRET
    assert account.cloud.count(path(GITHUB)) == 1


async def test_cache_entries_expire(account: Account) -> None:
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=0.05) as resolver:
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert account.cloud.count(path(GITHUB)) == 1
        await asyncio.sleep(0.1)  # let the entry expire: time itself is under test
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
    assert account.cloud.count(path(GITHUB)) == 2


async def test_a_rotated_session_key_misses_the_cache(account: Account) -> None:
    # issue 9 item 14: the key of a cached value includes a keyed digest of the values
    # read from env_headers, so a value fetched with a revoked key is not served after
    # the key changes.
    rotated = account.cloud.add_sandbox(
        account.user, sandbox_id="sb-rotated", session_api_key="rotated-session-key"
    )
    environ = {"SESSION_API_KEY": CANARY_SESSION_KEY}
    options: dict[str, Any] = {"environ": environ, "trusted_origins": [account.url]}
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60, **options) as resolver:
        assert await resolver.resolve(env_ref(account)) == CANARY_SECRET
        assert await resolver.resolve(env_ref(account)) == CANARY_SECRET  # a hit
        assert account.cloud.count(path(GITHUB)) == 1
        environ["SESSION_API_KEY"] = rotated.session_api_key  # rotated: fetch again
        with pytest.raises(CloudCredsError, match="does not match sandbox"):
            await resolver.resolve(env_ref(account))
        assert account.cloud.count(path(GITHUB)) == 2
        environ["SESSION_API_KEY"] = CANARY_SESSION_KEY  # back: that entry is still good
        assert await resolver.resolve(env_ref(account)) == CANARY_SECRET
        assert account.cloud.count(path(GITHUB)) == 2
        # The cache's keys hold a digest, never the session key itself.
        assert_no_canary(repr(list(resolver._cache)))
        assert len(resolver._cache) == 1
        resolver.invalidate(env_ref(account))  # every entry of that source, any digest
        assert await resolver.resolve(env_ref(account)) == CANARY_SECRET
    assert account.cloud.count(path(GITHUB)) == 3


async def test_the_cache_is_bounded_least_recently_used_out_first(account: Account) -> None:
    account.cloud.add_secret(account.user, "THIRD", "third-value")
    a, b, c = (lookup(account, name) for name in (GITHUB, OPENAI, "THIRD"))
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60, max_cache_entries=2) as resolver:
        for source in (a, b, a, c):  # a is used again before c comes: b is the oldest
            await resolver.resolve(source)
        assert account.cloud.count() == 3
        await resolver.resolve(a)  # still cached
        assert account.cloud.count() == 3
        await resolver.resolve(b)  # was pushed out
        assert account.cloud.count() == 4
        assert "cached=2" in repr(resolver)


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_max_cache_entries_must_be_positive(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_cache_entries"):
        SecretResolver(max_cache_entries=bad)


@pytest.mark.parametrize("budget", ["default", "none"])
async def test_a_resolver_shares_a_retry_budget_by_default(budget: str) -> None:
    # issue 10/11: against a cloud that is down, a resolver's fetches stop retrying
    # once the shared budget is spent; retry_budget=None retries every fetch in full.
    events: list[RetryEvent] = []
    policy = FAST_RETRY.with_(on_retry=events.append)
    url = f"http://127.0.0.1:{closed_port()}"
    sources = {
        str(i): LookupSecret(url=f"{url}/secret/{i}", headers={"X-K": "v"}) for i in range(300)
    }
    options: dict[str, Any] = {} if budget == "default" else {"retry_budget": None}
    async with SecretResolver(retry=policy, trusted_origins=[url], **options) as resolver:
        settled = await resolver.resolve_all_settled(sources)
    assert all(isinstance(result, CloudCredsError) for result in settled.values())
    paid = [event for event in events if not event.budget_exhausted]
    if budget == "default":
        full = RetryBudget()
        assert len(paid) == full.capacity // full.retry_cost
        assert any(event.budget_exhausted for event in events)
    else:
        assert len(paid) == 300 * (policy.attempts - 1)


async def test_resolvers_and_contexts_refuse_to_be_pickled() -> None:
    # issue 9 item 10: they hold a pool and this process's settings (and a digest key).
    async with SecretResolver(environ={"SESSION_API_KEY": CANARY_SESSION_KEY}) as resolver:
        for obj in (resolver, resolver.context, ResolveContext()):
            with pytest.raises(ConfigurationError, match="cannot be pickled") as info:
                pickle.dumps(obj)
            assert_no_canary(str(info.value))
            with pytest.raises(ConfigurationError, match="cannot be pickled"):
                copy.copy(obj)


async def test_no_ttl_caches_nothing(account: Account, resolver: SecretResolver) -> None:
    for _ in range(3):
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
    assert account.cloud.count(path(GITHUB)) == 3


async def test_errors_are_not_cached(account: Account) -> None:
    account.cloud.inject(path(GITHUB), Fault.status(503))
    async with SecretResolver(retry=RetryPolicy.no_retry(), cache_ttl=60) as resolver:
        with pytest.raises(ServerError) as caught:
            await resolver.resolve(lookup(account))
        assert caught.value.status_code == 503
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET  # now cached
    assert account.cloud.count(path(GITHUB)) == 2


async def test_invalidate_forces_a_refetch(account: Account) -> None:
    cloud = account.cloud
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        await resolver.resolve(lookup(account, GITHUB))
        await resolver.resolve(lookup(account, OPENAI))

        resolver.invalidate(lookup(account, GITHUB))  # an equal copy is enough
        await resolver.resolve(lookup(account, GITHUB))
        await resolver.resolve(lookup(account, OPENAI))
        assert (cloud.count(path(GITHUB)), cloud.count(path(OPENAI))) == (2, 1)

        resolver.invalidate(lookup(account, OPENAI).model_dump())  # the dumped form too
        await resolver.resolve(lookup(account, OPENAI))
        assert (cloud.count(path(GITHUB)), cloud.count(path(OPENAI))) == (2, 2)

        resolver.invalidate()
        await resolver.resolve(lookup(account, GITHUB))
        await resolver.resolve(lookup(account, OPENAI))
        assert (cloud.count(path(GITHUB)), cloud.count(path(OPENAI))) == (3, 3)


@pytest.mark.parametrize("everything", [False, True], ids=["one", "all"])
async def test_invalidate_during_a_fetch_prevents_caching(
    account: Account, everything: bool
) -> None:
    cloud = account.cloud
    cloud.set_latency(0.1, path(GITHUB))
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        pending = asyncio.create_task(resolver.resolve(lookup(account)))
        await wait_until(lambda: cloud.in_flight == 1)
        resolver.invalidate(None if everything else lookup(account))
        assert await pending == CANARY_SECRET  # the caller still gets its value

        cloud.set_latency(0, path(GITHUB))
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert cloud.count(path(GITHUB)) == 2  # refetched: the first result was not cached
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert cloud.count(path(GITHUB)) == 2  # this one was


# --------------------------------------------------------------------------- many at once


async def test_resolve_all_keeps_order(
    account: Account, resolver: SecretResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIN_VALUE", "from-env")
    account.cloud.set_latency(0.03, path(GITHUB))  # the first name finishes last
    sources: dict[str, Any] = {
        "z_github": lookup(account, GITHUB),
        "a_static": StaticSecret(value=SecretStr("static-value")),
        "m_openai": lookup(account, OPENAI).model_dump(),  # a dumped form
        "b_env": EnvSecret(env="PLAIN_VALUE"),
    }
    values = await resolver.resolve_all(sources)
    assert list(values) == list(sources)
    assert values["a_static"] == "static-value"
    assert values["b_env"] == "from-env"
    assert values["m_openai"] == "sk-other-value"
    assert values["z_github"] == CANARY_SECRET
    assert await resolver.resolve_all({}) == {}


async def test_resolve_all_raises_first_error_and_cancels_the_rest(account: Account) -> None:
    cloud = account.cloud
    cloud.set_latency(0.3, path(GITHUB))
    cloud.set_latency(0.3, path(OPENAI))
    cloud.set_latency(0.05, path("NOPE"))
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        sources = {
            "github": lookup(account, GITHUB),
            "nope": lookup(account, "NOPE"),
            "openai": lookup(account, OPENAI),
        }
        with pytest.raises(NotFoundError) as caught:
            await resolver.resolve_all(sources)
        assert caught.value.detail == "Secret not found"
        assert "NOPE" in str(caught.value.url)

        await wait_until(lambda: cloud.in_flight == 0)
        assert (cloud.count(path(GITHUB)), cloud.count(path(OPENAI))) == (1, 1)
        cloud.clear_faults()
        # Had the cancelled fetches completed, their values would be cached (TTL 60 s).
        assert await resolver.resolve(sources["github"]) == CANARY_SECRET
        assert await resolver.resolve(sources["openai"]) == "sk-other-value"
        assert (cloud.count(path(GITHUB)), cloud.count(path(OPENAI))) == (2, 2)


async def test_resolve_all_settled(
    account: Account, resolver: SecretResolver, sandbox_env: None
) -> None:
    sources: dict[str, Any] = {
        "ok": env_ref(account),
        "missing": lookup(account, "NOPE"),
        "elsewhere": LookupSecret(url="http://elsewhere.example.com/secret"),
        "unset": EnvSecret(env="CLOUDCREDS_TEST_UNSET_VARIABLE"),
        "dumped": env_ref(account, OPENAI).model_dump(),
    }
    settled = await resolver.resolve_all_settled(sources)
    assert list(settled) == list(sources)
    assert settled["ok"] == CANARY_SECRET
    assert settled["dumped"] == "sk-other-value"
    assert isinstance(settled["missing"], NotFoundError)
    assert isinstance(settled["elsewhere"], UntrustedOriginError)
    assert type(settled["unset"]) is SecretResolutionError
    assert "CLOUDCREDS_TEST_UNSET_VARIABLE" in str(settled["unset"])
    for value in settled.values():
        if isinstance(value, CloudCredsError):
            assert_no_canary(str(value))


async def test_max_concurrency_bounds_fetches(account: Account) -> None:
    cloud = account.cloud
    names = [f"SECRET_{i:02d}" for i in range(40)]
    for name in names:
        cloud.add_secret(account.user, name, f"value-of-{name}")
    cloud.set_latency(0.02)
    async with SecretResolver(retry=FAST_RETRY, max_concurrency=4) as resolver:
        values = await resolver.resolve_all({name: lookup(account, name) for name in names})
    assert values == {name: f"value-of-{name}" for name in names}
    assert len(cloud.requests) == 40
    assert 2 <= cloud.peak_in_flight <= 4


# --------------------------------------------------------------------------- trust


async def test_untrusted_origin_sends_nothing(account: Account, sandbox_env: None) -> None:
    async with SecretResolver(trusted_origins=["https://app.all-hands.dev"]) as resolver:
        for source in (lookup(account), env_ref(account), env_ref(account).model_dump()):
            with pytest.raises(UntrustedOriginError) as caught:
                await resolver.resolve(source)
            assert_no_canary(str(caught.value))
        settled = await resolver.resolve_all_settled({"a": lookup(account)})
        assert isinstance(settled["a"], UntrustedOriginError)
    assert account.cloud.requests == []
    assert not account.cloud.received_value(CANARY_SESSION_KEY)


async def test_trusted_origins_argument_allows(account: Account) -> None:
    async with SecretResolver(trusted_origins=[account.url + "/"]) as resolver:
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET


async def test_trusted_origins_env(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET  # configured (fixture)
        with pytest.raises(UntrustedOriginError):
            await resolver.resolve(LookupSecret(url="http://example.com/secret"))

        monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://app.all-hands.dev")
        with pytest.raises(UntrustedOriginError):
            await resolver.resolve(lookup(account))
        assert account.cloud.count(path(GITHUB)) == 1

        monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", f"https://app.all-hands.dev,{account.url}")
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert account.cloud.count(path(GITHUB)) == 2

    # An explicit argument wins over the environment.
    monkeypatch.setenv("CLOUDCREDS_TRUSTED_ORIGINS", "https://app.all-hands.dev")
    async with SecretResolver(trusted_origins=[account.url]) as resolver:
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET

    # Nothing configured: only the default cloud's origin, not a loopback port.
    monkeypatch.delenv("CLOUDCREDS_TRUSTED_ORIGINS")
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        with pytest.raises(UntrustedOriginError, match=account.url):
            await resolver.resolve(lookup(account))
    assert account.cloud.count(path(GITHUB)) == 3


# --------------------------------------------------------------------------- cancellation


async def test_one_caller_cancelling_keeps_the_shared_fetch(account: Account) -> None:
    cloud = account.cloud
    cloud.set_latency(0.1, path(GITHUB))
    async with SecretResolver(retry=FAST_RETRY) as resolver:
        quitter = asyncio.create_task(resolver.resolve(lookup(account)))
        stayer = asyncio.create_task(resolver.resolve(lookup(account)))
        await wait_until(lambda: cloud.in_flight == 1)
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        assert await stayer == CANARY_SECRET
    assert cloud.count(path(GITHUB)) == 1


async def test_last_caller_cancelling_stops_the_fetch(account: Account) -> None:
    cloud = account.cloud
    cloud.set_latency(0.2, path(GITHUB))
    async with SecretResolver(retry=FAST_RETRY, cache_ttl=60) as resolver:
        quitter = asyncio.create_task(resolver.resolve(lookup(account)))
        await wait_until(lambda: cloud.in_flight == 1)
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        # A caller arriving right after gets a fresh fetch, not the cancelled one.
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert cloud.count(path(GITHUB)) == 2
        await wait_until(lambda: cloud.in_flight == 0)
        cloud.set_latency(0, path(GITHUB))
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert cloud.count(path(GITHUB)) == 2  # the second fetch was cached, the first never


@pytest.mark.parametrize("invalidated", [False, True], ids=["plain", "after-invalidate"])
async def test_aclose_cancels_fetches_and_is_final(account: Account, invalidated: bool) -> None:
    cloud = account.cloud
    cloud.set_latency(0.3, path(GITHUB))
    resolver = SecretResolver(retry=FAST_RETRY)
    waiters = [asyncio.create_task(resolver.resolve(lookup(account))) for _ in range(3)]
    await wait_until(lambda: cloud.in_flight == 1)
    if invalidated:  # a fetch no longer shared is still the resolver's to cancel
        resolver.invalidate()

    await resolver.aclose()
    await resolver.aclose()  # idempotent
    assert resolver.closed

    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    for outcome in outcomes:  # the fetch was cancelled, so nobody got a value
        assert isinstance(outcome, ConfigurationError)
        assert "closed while resolving" in str(outcome)
    with pytest.raises(ConfigurationError, match="closed"):
        await resolver.resolve(lookup(account))
    with pytest.raises(ConfigurationError, match="closed"):
        await resolver.resolve_all({"a": lookup(account)})
    assert cloud.count(path(GITHUB)) == 1


# --------------------------------------------------------------------------- sources


async def test_resolves_dumped_mappings(
    account: Account, resolver: SecretResolver, sandbox_env: None
) -> None:
    dumped = dump_secret_sources({GITHUB: env_ref(account), OPENAI: env_ref(account, OPENAI)})
    payload = json.loads(json.dumps(dumped))
    assert await resolver.resolve(payload[GITHUB]) == CANARY_SECRET
    assert await resolver.resolve_all(payload) == {GITHUB: CANARY_SECRET, OPENAI: "sk-other-value"}

    masked = dump_secret_sources({GITHUB: lookup(account)})[GITHUB]  # redacted by default
    before = len(account.cloud.requests)
    with pytest.raises(ConfigurationError, match="mask"):
        await resolver.resolve(masked)
    assert len(account.cloud.requests) == before
    exposed = dump_secret_sources({GITHUB: lookup(account)}, expose_secrets=True)[GITHUB]
    assert await resolver.resolve(exposed) == CANARY_SECRET


async def test_custom_source_bug_propagates_as_itself(resolver: SecretResolver) -> None:
    with pytest.raises(CustomBugError, match="bug in a custom source"):
        await resolver.resolve(ExplodingSecret())
    with pytest.raises(CustomBugError):
        await resolver.resolve({"kind": "test-resolver-exploding"})
    with pytest.raises(CustomBugError):
        await resolver.resolve_all(
            {"ok": StaticSecret(value=SecretStr("v")), "bad": ExplodingSecret()}
        )
    with pytest.raises(CustomBugError):
        await resolver.resolve_all_settled(
            {"ok": StaticSecret(value=SecretStr("v")), "bad": ExplodingSecret()}
        )
    with pytest.raises(ConfigurationError, match="not str"):
        await resolver.resolve(NotAStringSecret())
    assert await resolver.resolve(StaticSecret(value=SecretStr("still-works"))) == "still-works"


async def test_event_loop_is_never_blocked(account: Account) -> None:
    # Counted in turns of the event loop, not in seconds: a ticker that yields at every
    # turn notes how many requests the server has seen. If resolve_all held the loop,
    # the ticker would see the count jump from 0 to 200 in a few steps.
    cloud = account.cloud
    names = [f"LOOP_{i:03d}" for i in range(200)]
    for name in names:
        cloud.add_secret(account.user, name, f"value-of-{name}")
    seen: set[int] = set()
    finished = asyncio.Event()

    async def tick() -> None:
        while not finished.is_set():
            seen.add(len(cloud.requests))
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        async with SecretResolver(retry=FAST_RETRY) as resolver:
            values = await resolver.resolve_all({name: lookup(account, name) for name in names})
    finally:
        finished.set()
        await ticker
    assert values == {name: f"value-of-{name}" for name in names}
    # 200 fetches, at most max_concurrency (16) at once: the ticker sees each batch.
    assert len(seen) >= 200 // 16, f"the loop turned at only {len(seen)} request counts"


# --------------------------------------------------------------------------- lifecycle


async def test_borrowed_session_is_left_open(account: Account) -> None:
    async with aiohttp.ClientSession() as session:
        async with SecretResolver(session=session) as resolver:
            assert resolver.context.session is session
            assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert not session.closed


async def test_unclosed_resolver_warns(account: Account) -> None:
    resolver = SecretResolver()
    assert await resolver.resolve(lookup(account)) == CANARY_SECRET
    session = resolver.context.session  # kept alive so that only the resolver is leaked
    holder = [resolver]
    del resolver
    with pytest.warns(ResourceWarning, match="unclosed SecretResolver"):
        holder.clear()
    await session.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrency": 0}, {"max_concurrency": 2.5}, {"cache_ttl": -1}, {"cache_ttl": "1"}],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SecretResolver(**kwargs)


async def test_repr_hides_values(account: Account) -> None:
    async with SecretResolver(cache_ttl=60) as resolver:
        assert await resolver.resolve(lookup(account)) == CANARY_SECRET
        assert "cached=1" in repr(resolver)
        assert_no_canary(repr(resolver))


class _Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    token: SecretStr
    tags: list[str] = []


class NestedKeySource(SecretSource):
    """A user kind with a nested model and a list: its equal copies must share a fetch."""

    kind: Literal["nested-key-test"] = "nested-key-test"
    endpoint: _Endpoint
    paths: list[str]

    async def resolve(self, ctx: ResolveContext) -> str:
        return self.endpoint.host


def _nested(token: str, paths: list[str]) -> NestedKeySource:
    endpoint = _Endpoint(host="h", token=SecretStr(token), tags=["a", "b"])
    return NestedKeySource(endpoint=endpoint, paths=paths)


def test_cache_key_is_equal_for_equal_sources_and_differs_on_any_value() -> None:
    ctx = ResolveContext(trusted_origins=["https://h"])

    def key_of(source: SecretSource) -> object:
        return _cache_key(source, ctx)

    key = key_of(_nested("t1", ["x", "y"]))
    assert key == key_of(_nested("t1", ["x", "y"]))
    hash(key)
    assert key != key_of(_nested("t2", ["x", "y"]))  # a secret value differs
    assert key != key_of(_nested("t1", ["y", "x"]))  # list order matters
    one = LookupSecret(url="https://h/x", headers={"A": SecretStr("1"), "B": SecretStr("2")})
    two = LookupSecret(url="https://h/x", headers={"B": SecretStr("2"), "A": SecretStr("1")})
    assert one == two
    assert key_of(one) == key_of(two)  # like dict equality: order does not matter
    static = StaticSecret(value=SecretStr("v"))
    assert key_of(static) != key_of(EnvSecret(env="v"))
    assert key_of(static) != key_of(StaticSecret(value=SecretStr("v"), description="d"))
