"""What the benchmark scripts share: the server process and its driver, and measuring.

``run.py`` and ``soak.py`` (and ``fleet.py``) each run a FakeCloud in a separate
process, so the client has a core of its own. Both sides of that process speak one
small line protocol, written here once:

* the server prints one JSON line ``{"url": ...}`` when it listens, then reads one
  command per line on stdin and answers each with one line, ``ok [payload]`` or
  ``error <why>`` (:func:`serve_commands`);
* it stops on ``quit``, when stdin closes (the parent went away), or after the
  ``--max-seconds`` its script sets;
* the parent drives it with :class:`Server`: every read has a timeout, and
  :meth:`Server.stop` kills the process if it does not quit by itself.

The measuring helpers (summaries of samples, paired ratios, CPU and wall time of one
run, peak and current RSS, open file descriptors, the machine) are here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

SERVER_START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 30.0

# --------------------------------------------------------------------------- server side

#: A command handler: (command, argument) -> the answer's payload ("" for a bare ``ok``).
#: Raising ``ValueError`` answers ``error <message>``.
Handler = Callable[[str, str], str]


async def serve_commands(url: str, handle: Handler) -> None:
    """Announce ``url`` on stdout, then answer stdin's commands until ``quit`` or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"url": url}), flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":  # EOF: the parent is gone
            return
        command, _, arg = line.partition(" ")
        try:
            payload = handle(command, arg)
        except ValueError as exc:
            answer = f"error {exc}"
        else:
            answer = f"ok {payload}".rstrip()
        print(answer, flush=True)


def run_server(serve: Coroutine[Any, Any, None], max_seconds: float) -> None:
    """Run a server coroutine until it returns, ``max_seconds`` pass, or Ctrl-C."""
    with contextlib.suppress(TimeoutError, KeyboardInterrupt):
        asyncio.run(asyncio.wait_for(serve, max_seconds))


# --------------------------------------------------------------------------- client side


class Server:
    """A server process started from ``argv``, driven over its stdin and stdout."""

    def __init__(self, argv: Sequence[str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        line = self._readline(SERVER_START_TIMEOUT)
        self.url: str = json.loads(line)["url"]

    def _readline(self, timeout: float) -> str:
        stdout = self._proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            self.stop()
            raise RuntimeError(f"the benchmark server did not answer within {timeout:g}s")
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark server exited (code {self._proc.poll()})")
        return line.strip()

    def command(self, line: str) -> str:
        """Send one command line; return the answer's payload after ``ok``."""
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()
        answer = self._readline(COMMAND_TIMEOUT)
        if not answer.startswith("ok"):
            raise RuntimeError(f"server command {line!r} failed: {answer}")
        return answer[2:].strip()

    def command_json(self, line: str) -> Any:
        """Send one command whose answer's payload is JSON; return it decoded."""
        return json.loads(self.command(line))

    def stop(self) -> None:
        """Ask the server to quit; kill it if it does not within a few seconds."""
        proc = self._proc
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def running_server(argv: Sequence[str]) -> Iterator[Server]:
    """A started :class:`Server`, stopped on exit."""
    server = Server(argv)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- measuring


def summary(samples: Sequence[float], digits: int = 6) -> dict[str, Any]:
    """Median, min, max and the samples themselves, rounded for stable JSON."""
    return {
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "samples": [round(s, digits) for s in samples],
    }


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, Any]:
    """Round-by-round ratios (paired samples), summarized."""
    return summary([a / b for a, b in zip(numerators, denominators, strict=True)], 4)


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    versions = {}
    for name in ("cloudcreds", "aiohttp", "pydantic", "pydantic_core", "anyio", "tenacity"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[name] = version(name)
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": platform.system(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
    }


async def measure(run: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """CPU seconds and wall seconds of one awaited run (garbage collected first)."""
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = await run()
    wall1, cpu1 = time.perf_counter(), time.process_time()
    return cpu1 - cpu0, wall1 - wall0, result


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def reset_peak_rss() -> bool:
    """Restart the peak RSS from the current RSS (Linux), so imports' peak is not counted.

    Free heap memory is handed back to the system first (glibc's ``malloc_trim``), or
    the next allocations would reuse it without the RSS showing them.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def rss_bytes() -> int:
    """Current resident set size of this process (Linux; 0 elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_fds() -> int:
    """Open file descriptors of this process (Linux)."""
    return len(os.listdir("/proc/self/fd"))
