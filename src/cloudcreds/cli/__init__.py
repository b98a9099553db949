"""The ``cloudcreds`` command (also ``python -m cloudcreds``).

Subcommands, by job:
    fake cloud (``_fakecloud``): ``demo`` runs the main job on an embedded FakeCloud
        and prints a redacted report; ``serve`` runs FakeCloud standalone.
    product (``_product``, ``_run``, ``_gather``): ``llm``, ``secrets``, ``mcp``, ``resolve``,
        ``run``, ``gather``, against the cloud configured by flags or the environment.

Shared pieces: ``_args`` (value types, connection options), ``_output`` (the one way
to write: whole or nothing, escaped), ``_exits`` (the exit-code table, written once),
``_fleet`` (``gather``'s input, streamed), ``_main`` (the parser and what ``main``
catches). Settings come from :mod:`cloudcreds._settings`, as for the library.

A failure is one line on stderr, ``cloudcreds: error: <message>``, never a traceback,
and no secret value is ever printed except by ``resolve``, whose purpose it is.
"""

from ._exits import ExitCode, exit_code_for, exit_codes_text
from ._main import build_parser, main

__all__ = ["ExitCode", "build_parser", "exit_code_for", "main"]

__doc__ = f"{__doc__ or ''}\nExit codes:\n{exit_codes_text('    ')}\n"
