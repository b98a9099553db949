"""The benchmark script runs end to end in its quick mode and writes what it promises.

A behaviour check only: the numbers themselves are never asserted (no speed claims in
tests), only that every benchmark ran, wrote valid JSON with its keys, and that the
README table is written between its markers without touching the rest of the file.

Marked ``slow`` (each runs the benchmark script in subprocesses, bounded by a timeout):
the README's test command, plain ``python -m pytest``, runs them; ``-m "not slow"``
leaves them out while working on something else.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "run.py"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# Each benchmark's file and the keys it must hold (besides benchmark/params/environment).
EXPECTED: dict[str, tuple[str, ...]] = {
    "overhead": (
        "cpu_seconds",
        "wall_seconds",
        "cpu_ratio",
        "wall_ratio",
        "cpu_ratio_same_timeouts",
        "goal",
    ),
    "concurrency": ("latency_seconds", "credentials_vs_one_request", "sequential_vs_one_request"),
    "resolver": ("cpu_seconds", "wall_seconds", "cpu_ratio", "wall_ratio", "cache_hit_us"),
    "scale": ("by_size", "per_1k_sandboxes", "in_flight_growth_factor"),
    "stream": ("by_size", "rss_ratio", "goal"),
    "outage": ("wall_seconds", "retries"),
    "import": ("import_seconds", "ratio_vs_floor"),
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )


def _is_stat(value: Any) -> bool:
    """A summary of samples: median, min and max, finite and ordered."""
    if not isinstance(value, dict) or not {"median", "min", "max", "samples"} <= set(value):
        return False
    low, mid, high = value["min"], value["median"], value["max"]
    finite = all(isinstance(v, int | float) and math.isfinite(v) for v in (low, mid, high))
    return finite and low <= mid <= high and len(value["samples"]) >= 1


def test_quick_run_writes_every_result_and_the_readme_table(tmp_path: Path) -> None:
    results = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\nBody text another section owns.\n", encoding="utf-8")

    done = _run("--quick", "--results-dir", str(results), "--readme", str(readme))
    assert done.returncode == 0, done.stderr[-3000:]

    for name, keys in EXPECTED.items():
        data = json.loads((results / f"{name}.json").read_text(encoding="utf-8"))
        assert data["benchmark"] == name
        assert data["params"]["rounds"] >= 1
        assert data["environment"]["python"]
        missing = [key for key in keys if key not in data]
        assert not missing, f"{name}.json lacks {missing}"

    overhead = json.loads((results / "overhead.json").read_text(encoding="utf-8"))
    assert overhead["params"]["sandboxes"] == 20
    assert set(overhead["cpu_seconds"]) == {
        "cloudcreds",
        "raw_aiohttp",
        "raw_aiohttp_same_timeouts",
    }
    assert all(_is_stat(v) for v in overhead["cpu_seconds"].values())
    assert _is_stat(overhead["cpu_ratio"])
    concurrency = json.loads((results / "concurrency.json").read_text(encoding="utf-8"))
    assert set(concurrency["latency_seconds"]) == {"get_credentials", "get_llm", "old_sequential"}
    assert _is_stat(concurrency["credentials_vs_one_request"])
    resolver = json.loads((results / "resolver.json").read_text(encoding="utf-8"))
    assert _is_stat(resolver["cache_hit_us"])
    scale = json.loads((results / "scale.json").read_text(encoding="utf-8"))
    assert sorted(int(n) for n in scale["by_size"]) == [20, 200]
    assert all(s["results_mib"] > 0 for s in scale["by_size"].values())
    assert all(_is_stat(s["rss_peak_mib"]) for s in scale["by_size"].values())
    stream = json.loads((results / "stream.json").read_text(encoding="utf-8"))
    assert sorted(int(n) for n in stream["by_size"]) == [200, 2000]
    assert all(_is_stat(s["rss_peak_mib"]) for s in stream["by_size"].values())
    assert _is_stat(stream["rss_ratio"])
    outage = json.loads((results / "outage.json").read_text(encoding="utf-8"))
    assert outage["params"]["sandboxes"] == 40
    assert all(_is_stat(v) for v in outage["wall_seconds"].values())
    imports = json.loads((results / "import.json").read_text(encoding="utf-8"))
    assert _is_stat(imports["import_seconds"]["cloudcreds"])

    table = done.stdout
    assert "| Benchmark |" in table
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# project\n\nBody text another section owns.\n")
    assert text.count(START) == 1
    assert text.count(END) == 1
    assert "## Benchmarks" in text
    assert text.index("## Benchmarks") < text.index(START) < text.index("| Benchmark |")


def test_render_rewrites_only_between_the_markers(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    done = _run("--quick", "--only", "import", "--results-dir", str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    readme = tmp_path / "README.md"
    before = "# project\n\n## Benchmarks\n\n"
    after = "\n\n## Later section\n\nkept as is\n"
    readme.write_text(f"{before}{START}\nold table\n{END}{after}", encoding="utf-8")

    for _ in range(2):  # idempotent: the second run replaces the first table
        rendered = _run("--render", "--results-dir", str(results), "--readme", str(readme))
        assert rendered.returncode == 0, rendered.stderr[-3000:]

    text = readme.read_text(encoding="utf-8")
    assert text.startswith(before + START)
    assert text.endswith(END + after)
    assert "old table" not in text
    assert text.count("| Benchmark |") == 1
    assert "import cloudcreds" in text
