"""One write scenario under two settings, measured in turns so the machine's drift cancels out.

.venv/bin/python -m bench.ab [--pairs 3] [--env NAME=VALUE ...] [--b-args="..."] [costs options]

Machines here change speed by a third within minutes, so a single `bench.costs` run of each
setting can show a gain that is only the machine's mood. This runs `bench.costs` (each run
with its own hello world) as A, with the options given, and as B, with `--env` added to its
environment and `--b-args` to its options. The order turns round every pair (AB, BA, AB, ...)
so a machine speeding up or slowing down favours neither side. It prints each run, then the
median ratio to hello world and CPU per request of each side, and in how many pairs B beat A.

Examples: `--env PGOPTIONS="-c synchronous_commit=off" --db postgres` (PostgreSQL without
waiting for the flush on commit) or `--b-args="--workers 3" --db postgres`. Both sides run this
checkout's code: it compares settings, not two versions of the code (`bench.profile
--callgrind` does that).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    """One `bench.costs` run: which side, its pair, and what it measured."""

    side: str
    pair: int
    ratio: float
    rate: float
    #: the whole machine's µs of CPU a request, and the web workers'
    machine_us: float
    web_us: float
    errors: int


def run_from(side: str, pair: int, measured: dict[str, Any]) -> Run:
    """A `Run` from the figures `bench.costs --json` wrote."""
    scenario = measured["scenario"]
    return Run(
        side=side,
        pair=pair,
        ratio=measured["ratio"],
        rate=scenario["rate"],
        machine_us=scenario["us"]["all"],
        web_us=scenario["us"].get("web", 0.0),
        errors=scenario["errors"] + measured["hello"]["errors"],
    )


def summary(runs: list[Run]) -> list[str]:
    """Each side's medians, and how each pair's B compared with its A."""
    lines = []
    for side in ("A", "B"):
        own = [run for run in runs if run.side == side]
        lines.append(
            f"{side}: median ratio {statistics.median(r.ratio for r in own):.3f}, "
            f"{statistics.median(r.rate for r in own):,.0f} req/s, "
            f"{statistics.median(r.machine_us for r in own):,.0f} µs of the machine a request "
            f"(web {statistics.median(r.web_us for r in own):,.0f})"
        )
    pairs = sorted({run.pair for run in runs})
    changes = []
    for pair in pairs:
        by_side = {run.side: run for run in runs if run.pair == pair}
        if {"A", "B"} <= by_side.keys() and by_side["A"].ratio:
            changes.append(by_side["B"].ratio / by_side["A"].ratio - 1)
    if changes:
        ahead = sum(change > 0 for change in changes)
        lines.append(
            f"B against A, pair by pair: {', '.join(f'{c:+.0%}' for c in changes)}; "
            f"median {statistics.median(changes):+.0%}; B ahead in {ahead} of {len(changes)}"
        )
    return lines


def parse_env(pairs: list[str]) -> dict[str, str]:
    """NAME=VALUE settings, each checked for its '='."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env wants NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def main(argv: list[str] | None = None) -> int:
    """Run A and B in turns and print each run and the comparison."""
    parser = argparse.ArgumentParser(prog="bench/ab.py", description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-args", default="", help="options B adds to bench.costs's")
    args, costs_args = parser.parse_known_args(argv)
    scenario = argparse.ArgumentParser(add_help=False)
    scenario.add_argument("--scenario")
    if scenario.parse_known_args(costs_args)[0].scenario == "mixed":
        parser.error("the mixed run has no single ratio to compare: use bench.costs for it")
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    sides = {
        "A": (costs_args, {}),
        "B": ([*costs_args, *shlex.split(args.b_args)], parse_env(args.env)),
    }
    runs: list[Run] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="undersigned-ab-") as folder:
        for pair in range(1, args.pairs + 1):
            for side in "AB" if pair % 2 else "BA":
                options, extra_env = sides[side]
                out = Path(folder) / f"{pair}{side}.json"
                done = subprocess.run(
                    [sys.executable, "-m", "bench.costs", *options, "--json", str(out)],
                    cwd=ROOT,
                    env={**os.environ, **extra_env},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0 or not out.exists():
                    failed = True
                    print(f"pair {pair} {side}: bench.costs failed ({done.returncode})")
                    print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
                    continue
                run = run_from(side, pair, json.loads(out.read_text()))
                runs.append(run)
                print(
                    f"pair {pair} {side}: ratio {run.ratio:.3f}, {run.rate:,.0f} req/s, "
                    f"{run.machine_us:,.0f} µs of the machine a request (web {run.web_us:,.0f}), "
                    f"{run.errors} errors",
                    flush=True,
                )
    if {run.side for run in runs} == {"A", "B"}:
        print("\n".join(summary(runs)))
    return 1 if failed or any(run.errors for run in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
