"""Custom secret source: add a ``VaultSecret`` kind, serialize it, load it back, resolve it.

Run it with ``python examples/custom_source.py``. A new kind is a subclass of
:class:`cloudcreds.SecretSource` with a ``kind`` literal and an async ``resolve(ctx)``.
The class registers itself: from then on :func:`~cloudcreds.parse_secret_source` and
:func:`~cloudcreds.load_secret_sources` accept it, next to the built-in kinds.

The vault here is a toy aiohttp server on 127.0.0.1 that answers like a key/value
store: ``GET /v1/secret/data/{path}`` with an ``X-Vault-Token`` header returns
``{"data": {"data": {"value": ...}}}``. Like the built-in ``EnvHeaderLookupSecret``, the
source stores the NAME of the variable that holds the token, never the token.
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar, Literal
from urllib.parse import quote

from aiohttp import web

from cloudcreds import (
    EnvSecret,
    ResolveContext,
    SecretResolutionError,
    SecretResolver,
    SecretSource,
    UntrustedOriginError,
    dump_secret_sources,
    load_secret_sources,
)

VAULT_TOKEN = "vault-token-for-the-example"
VAULT_DATA = {"ci/github": "ghp_from_the_toy_vault_0001"}


class VaultSecret(SecretSource):
    """A secret read from a key/value vault over HTTP.

    Attributes:
        address: The vault's origin, e.g. ``https://vault.example.com``.
        path: The secret's path in the store.
        field: The field of the stored record that holds the value.
        token_env: The environment variable that holds the vault token (its NAME).
    """

    kind: Literal["VaultSecret"] = "VaultSecret"
    address: str
    path: str
    field: str = "value"
    token_env: str = "VAULT_TOKEN"

    uses_network: ClassVar[bool] = True

    async def resolve(self, ctx: ResolveContext) -> str:
        """Fetch the record and return its ``field``.

        Raises:
            SecretResolutionError: No token in the environment, or no such field.
            UntrustedOriginError: ``address`` is not trusted; nothing was sent.
        """
        token = ctx.environ.get(self.token_env)  # os.environ unless the resolver was given one
        if not token:
            raise SecretResolutionError(f"environment variable {self.token_env} is not set")
        # fetch_text applies the trust rule, retries, timeouts and the body-size limit.
        url = f"{self.address}/v1/secret/data/{quote(self.path, safe='/')}"
        body = await ctx.fetch_text(url, {"X-Vault-Token": token})
        try:
            value = json.loads(body)["data"]["data"][self.field]
        except (ValueError, KeyError, TypeError):
            raise SecretResolutionError(
                f"the vault record {self.path!r} has no field {self.field!r}"
            ) from None
        if not isinstance(value, str):
            raise SecretResolutionError(f"the vault field {self.field!r} is not a string")
        return value


async def toy_vault(request: web.Request) -> web.Response:
    """The vault's read endpoint."""
    if request.headers.get("X-Vault-Token") != VAULT_TOKEN:
        return web.json_response({"errors": ["permission denied"]}, status=403)
    value = VAULT_DATA.get(request.match_info["path"])
    if value is None:
        return web.json_response({"errors": []}, status=404)
    return web.json_response({"data": {"data": {"value": value}}})


async def main() -> None:
    app = web.Application()
    app.router.add_get("/v1/secret/data/{path:.+}", toy_vault)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        vault = f"http://{host}:{port}"

        # The orchestrator side builds references and serializes them.
        sources: dict[str, SecretSource] = {
            "GITHUB_TOKEN": VaultSecret(address=vault, path="ci/github"),
            "DEPLOY_KEY": EnvSecret(env="DEPLOY_KEY", description="a built-in kind, alongside"),
        }
        data = json.dumps(dump_secret_sources(sources))
        print(f"dumped: {data}")

        # The agent side loads them back: the vault kind is recognized by its "kind".
        loaded = load_secret_sources(data)
        print(f"loaded: {', '.join(f'{n}={type(s).__name__}' for n, s in loaded.items())}")

        # The agent's environment holds the vault token and the deploy key.
        environ = {"VAULT_TOKEN": VAULT_TOKEN, "DEPLOY_KEY": "deploy-key-for-the-example"}
        async with SecretResolver(trusted_origins=[vault], environ=environ) as resolver:
            values = await resolver.resolve_all(loaded)
            for name, value in values.items():
                print(f"resolved {name}: {len(value)} characters (value not shown)")

            # A reference pointing elsewhere is refused before anything is sent.
            rogue = VaultSecret(address="http://vault.attacker.example", path="ci/github")
            try:
                await resolver.resolve(rogue)
            except UntrustedOriginError as exc:
                print(f"refused: {type(exc).__name__}: {exc}")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
