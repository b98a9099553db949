"""The product commands that read one sandbox's credentials: ``llm``, ``secrets``, ``resolve``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from .._config import MASK, RetryPolicy, Timeouts
from .._errors import CloudCredsError, ConfigurationError
from .._models import LLM, MCPServer
from .._resolver import SecretResolver
from .._urls import safe_url
from .._workspace import CloudWorkspace
from ._args import SECRET_LIST, SESSION_ENV, USERS_ME, add_connection, add_subparser, connection
from ._exits import ExitCode
from ._output import llm_data, print_json, table, write

__all__ = ["fetch_llm", "mcp_data", "register", "resolve_as_sandbox"]


def register(sub: Any) -> None:
    """Add ``llm``, ``secrets``, ``mcp`` and ``resolve`` to the subcommands ``sub``."""
    p = add_subparser(
        sub,
        "llm",
        "show the inherited LLM settings (key masked)",
        "Show the LLM settings the user saved in the cloud: model, base URL, and whether a "
        f"key is set (shown as {MASK}, never in clear).",
        "  cloudcreds llm --json",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--profile", metavar="NAME", help="the account's named LLM profile (default: its default)"
    )
    p.add_argument("--model", metavar="MODEL", help="the LLM model, winning over the account's")
    add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_llm)

    p = add_subparser(
        sub,
        "secrets",
        "list the user's secrets (names and descriptions)",
        "List the names and descriptions of the user's secrets (and git provider tokens). "
        "No value is fetched.",
        "  cloudcreds secrets --agent-profile reviewer --json",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--agent-profile",
        metavar="ID",
        help="list only the secrets this agent profile refers to (default: all)",
    )
    add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_secrets)

    p = add_subparser(
        sub,
        "mcp",
        "list the user's MCP servers (keys masked)",
        "List the MCP servers of the user's cloud settings: name, transport, URL (without "
        f"query string) or command. Header and environment values show as {MASK}.",
        "  cloudcreds mcp --json",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_connection(p, sandbox=True)
    p.set_defaults(handler=_cmd_mcp)

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


async def resolve_as_sandbox(
    refs: Mapping[str, Any],
    session_key: SecretStr,
    *,
    retry: RetryPolicy | None,
    timeouts: Timeouts | None,
    trusted_origins: Sequence[str] | None = None,
) -> dict[str, str | CloudCredsError]:
    """Resolve references the way a sandbox does: the session key in its env variable.

    The variable is read from a mapping given to the resolver, never set in
    ``os.environ`` (other threads and tasks would see it).

    Returns:
        Each name's value, or the error its resolution met.
    """
    async with SecretResolver(
        retry=retry,
        timeout=timeouts,
        trusted_origins=trusted_origins,
        environ={SESSION_ENV: session_key.get_secret_value()},
    ) as resolver:
        return await resolver.resolve_all_settled(refs)


async def fetch_llm(ws: CloudWorkspace, model: str | None, profile: str | None = None) -> LLM:
    """The account's LLM settings; ``model`` (``--model``) wins over the account's.

    Args:
        ws: The workspace.
        model: ``--model``, or ``None``.
        profile: ``--profile``: a named LLM profile of the account, or ``None``.

    Raises:
        ConfigurationError: No model on the account and no ``--model``, said for a shell.
        NotFoundError: The account has no profile of that name.
    """
    if model is not None:
        return await ws.get_llm(profile, model=model)
    try:
        return await ws.get_llm(profile)
    except ConfigurationError:
        pass  # raised below, outside the block: the library's words are for Python callers
    raise ConfigurationError(
        "the account has no LLM model: set one in the cloud settings or pass --model"
    )


def _cmd_llm(args: argparse.Namespace) -> int:
    conn = connection(args, require=USERS_ME)

    async def fetch() -> LLM:
        async with conn.workspace() as ws:
            return await fetch_llm(ws, args.model, args.profile)

    llm = asyncio.run(fetch())
    if args.json:
        print_json({**llm_data(llm), "profile_name": llm.profile_name})
    else:
        key = f"{MASK} (set; not shown)" if llm.api_key is not None else "(none)"
        rows = [
            ("model:", llm.model),
            ("base URL:", llm.base_url or "(default)"),
            ("API key:", key),
            *([("profile:", llm.profile_name)] if llm.profile_name is not None else []),
        ]
        write("\n".join(table(rows)) + "\n")
    return ExitCode.OK


def _cmd_secrets(args: argparse.Namespace) -> int:
    conn = connection(args, require=SECRET_LIST)

    async def fetch() -> dict[str, Any]:
        async with conn.workspace() as ws:
            return dict(await ws.get_secrets(agent_profile_id=args.agent_profile))

    refs = asyncio.run(fetch())
    items = [{"name": name, "description": ref.description} for name, ref in refs.items()]
    if args.json:
        print_json(items)
    elif not items:
        write("(no secrets)\n")
    else:
        write("\n".join(table([(i["name"], i["description"] or "") for i in items])) + "\n")
    return ExitCode.OK


def mcp_data(server: MCPServer) -> dict[str, Any]:
    """One MCP server as printed: values of headers and env as :data:`MASK`, URL without query."""
    return {
        "transport": server.transport,
        "url": None if server.url is None else safe_url(server.url),
        "headers": dict.fromkeys(server.headers, MASK),
        "timeout": server.timeout,
        "command": server.command,
        "args": list(server.args),
        "env": dict.fromkeys(server.env, MASK),
    }


def _mcp_row(name: str, server: MCPServer) -> tuple[str, str]:
    if server.command is not None:
        where = " ".join([server.command, *server.args])
    else:
        where = safe_url(server.url) if server.url is not None else "(no URL)"
    masked = [*server.headers, *server.env]
    return name, f"{server.transport}  {where}" + (
        f"  ({', '.join(masked)}: {MASK})" if masked else ""
    )


def _cmd_mcp(args: argparse.Namespace) -> int:
    conn = connection(args, require=USERS_ME)

    async def fetch() -> dict[str, MCPServer]:
        async with conn.workspace() as ws:
            return await ws.get_mcp_config()

    servers = asyncio.run(fetch())
    if args.json:
        print_json({name: mcp_data(server) for name, server in servers.items()})
    elif not servers:
        write("(no MCP servers)\n")
    else:
        write("\n".join(table([_mcp_row(n, s) for n, s in servers.items()])) + "\n")
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
        value = values[name]
        if isinstance(value, CloudCredsError):
            raise value
        return value

    value = asyncio.run(fetch())
    write(value + "\n")  # printing the value is this command's purpose
    return ExitCode.OK
