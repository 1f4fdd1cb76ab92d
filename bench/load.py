"""Driving load with wrk and reading what its scripts report.

wrk's Lua scripts (bench/lua/) end every run with one `BENCH_JSON {...}` line, parsed here.
Gunicorn's sync workers close the connection after each response, so wrk reconnects for every
request, as browsers behind a proxy without keep-alive would.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
#: numbers each wrk run, so that runs draw client addresses from different blocks
_runs = itertools.count()


@dataclass(frozen=True)
class Load:
    """How hard to push: connections, wrk threads, and how long."""

    connections: int
    threads: int
    warmup: float
    duration: float


@dataclass
class WrkResult:
    """One wrk run, as its script summarised it."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    exhausted: int = 0

    @property
    def successes(self) -> int:
        """Responses with a 1xx-3xx status."""
        return self.requests - self.status_errors

    @property
    def rate(self) -> float:
        """Successful responses per second."""
        return self.successes / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Error statuses (4xx/5xx) plus connect, read, write and timeout errors."""
        return self.status_errors + self.socket_errors


class WrkFailed(RuntimeError):
    """wrk did not run or did not report."""


def wrk(
    url: str,
    script: str,
    *,
    seconds: float,
    connections: int,
    threads: int,
    args: list[str] | tuple[str, ...] = (),
    timeout_s: float = 30.0,
) -> WrkResult:
    """Run wrk with `bench/lua/<script>` for `seconds` and return its summary."""
    if not Path(WRK).exists():
        raise WrkFailed("wrk is not installed: apt-get install -y wrk")
    whole_seconds = max(1, round(seconds))
    command = [
        WRK,
        f"--threads={threads}",
        f"--connections={max(connections, threads)}",
        f"--duration={whole_seconds}s",
        f"--timeout={timeout_s:g}s",
        f"--script={LUA / script}",
        url,
        "--",
        *args,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=whole_seconds + 30,
            check=False,
            env={**os.environ, "BENCH_CLIENT_BLOCK": str(next(_runs) * 4)},
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkFailed(f"wrk {script} did not finish") from exc
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise WrkFailed(f"wrk {script} failed ({done.returncode}): {done.stdout}{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    if data["requests"] == 0 or data["p99_us"] == 0:
        # No answer at all, or none in time: wrk recorded no latency to speak of.
        data.update(p50_us=math.nan, p99_us=math.nan, max_us=math.nan)
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        status_errors=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        exhausted=data["exhausted"],
    )
