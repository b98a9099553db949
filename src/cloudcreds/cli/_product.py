"""The product commands that read one sandbox's credentials: ``llm``, ``secrets``, ``resolve``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from .._config import MASK, RetryPolicy, Timeouts
from .._models import LLM
from .._resolver import SecretResolver
from ._args import SECRET_LIST, SESSION_ENV, USERS_ME, add_connection, add_subparser, connection
from ._exits import ExitCode
from ._output import llm_data, print_json, table

__all__ = ["register", "resolve_as_sandbox"]


def register(sub: Any) -> None:
    """Add ``llm``, ``secrets`` and ``resolve`` to the subcommands ``sub``."""
    p = add_subparser(
        sub,
        "llm",
        "show the inherited LLM settings (key masked)",
        "Show the LLM settings the user saved in the cloud: model, base URL, and whether a "
        f"key is set (shown as {MASK}, never in clear).",
        "  cloudcreds llm --json",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_llm)

    p = add_subparser(
        sub,
        "secrets",
        "list the user's secrets (names and descriptions)",
        "List the names and descriptions of the user's secrets. No value is fetched.",
        "  cloudcreds secrets --json",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_secrets)

    p = add_subparser(
        sub,
        "resolve",
        "print one secret's value",
        "Print one secret's value on stdout, fetched with the sandbox's session key. "
        "Printing the value is this command's purpose: use it inside the sandbox.",
        '  export GITHUB_TOKEN="$(cloudcreds resolve GITHUB_TOKEN)"',
    )
    p.add_argument("name", metavar="NAME", help="the secret's name")
    add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_resolve)


@contextlib.contextmanager
def _temporary_env(name: str, value: str) -> Iterator[None]:
    """Set ``os.environ[name]`` for the duration of the block, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


async def resolve_as_sandbox(
    refs: Mapping[str, Any],
    session_key: SecretStr,
    *,
    retry: RetryPolicy | None,
    timeouts: Timeouts | None,
    trusted_origins: Sequence[str] | None = None,
) -> dict[str, str]:
    """Resolve references the way a sandbox does: the session key in its env variable."""
    with _temporary_env(SESSION_ENV, session_key.get_secret_value()):
        async with SecretResolver(
            retry=retry, timeout=timeouts, trusted_origins=trusted_origins
        ) as resolver:
            return await resolver.resolve_all(refs)


def _cmd_llm(args: argparse.Namespace) -> int:
    conn = connection(args, require=USERS_ME)

    async def fetch() -> LLM:
        async with conn.workspace() as ws:
            return await ws.get_llm()

    llm = asyncio.run(fetch())
    if args.json:
        print_json(llm_data(llm))
    else:
        key = f"{MASK} (set; not shown)" if llm.api_key is not None else "(none)"
        for line in table(
            [("model:", llm.model), ("base URL:", llm.base_url or "(default)"), ("API key:", key)]
        ):
            print(line)
    return ExitCode.OK


def _cmd_secrets(args: argparse.Namespace) -> int:
    conn = connection(args, require=SECRET_LIST)

    async def fetch() -> dict[str, Any]:
        async with conn.workspace() as ws:
            return dict(await ws.get_secrets())

    refs = asyncio.run(fetch())
    items = [{"name": name, "description": ref.description} for name, ref in refs.items()]
    if args.json:
        print_json(items)
    elif not items:
        print("(no secrets)")
    else:
        for line in table([(i["name"], i["description"] or "") for i in items]):
            print(line)
    return ExitCode.OK


def _cmd_resolve(args: argparse.Namespace) -> int:
    conn = connection(args, require=SECRET_LIST)
    session_key = conn.session_key
    assert session_key is not None
    name: str = args.name

    async def fetch() -> str:
        async with conn.workspace() as ws:
            refs = await ws.get_secrets(names=[name])
        values = await resolve_as_sandbox(
            refs, session_key, retry=conn.retry, timeouts=conn.timeout
        )
        return values[name]

    value = asyncio.run(fetch())
    sys.stdout.write(value + "\n")  # printing the value is this command's purpose
    sys.stdout.flush()
    return ExitCode.OK
