"""Load from wrk: run one of bench/lua's scripts and read the summary line it prints.

Every request comes from an address of its own in X-Forwarded-For: through nginx as one
address (nginx adds its own), straight to gunicorn as two, so that the app, trusting two
proxies (TRUSTED_PROXIES=2), sees a crowd, as its per-address limits would in production.
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
_runs = itertools.count()  # each run draws client addresses from a block of its own


@dataclass(frozen=True)
class Load:
    """How hard to push: connections, wrk threads, and seconds of warm-up and measure."""

    connections: int
    threads: int
    warmup: float
    duration: float


@dataclass
class WrkResult:
    """One wrk run, as its script summarised it; errors are 4xx/5xx plus socket errors."""

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
        """Error answers and socket errors."""
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
    direct: bool = False,
    env: dict[str, str] | None = None,
) -> WrkResult:
    """Run wrk with `lua/<script>` against `url`; `direct` when `url` is gunicorn's own, not
    nginx's; `env` for the script (BENCH_INTERVAL paces sign.lua)."""
    whole_seconds = max(1, round(seconds))
    command = [
        *(WRK, f"--threads={threads}", f"--connections={max(connections, threads)}"),
        *(f"--duration={whole_seconds}s", "--timeout=30s", f"--script={LUA / script}"),
        *(url, "--", *args),
    ]
    env = {
        **os.environ,
        "BENCH_CLIENT_BLOCK": str(next(_runs) * 4),
        "BENCH_PROXY": ", 127.0.0.1" if direct else "",
        **(env or {}),
    }
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=whole_seconds + 60, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WrkFailed(f"wrk {script} did not run or finish: {exc}") from exc
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise WrkFailed(f"wrk {script} failed ({done.returncode}): {done.stdout}{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    if data["requests"] == 0 or data["p99_us"] == 0:
        data.update(p50_us=math.nan, p99_us=math.nan, max_us=math.nan)  # no answer in time
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
