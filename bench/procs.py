"""Child processes of a bench run (gunicorn, nginx, the mail worker, the SMTP sink) and
small HTTP and /proc helpers. Every child gets its own process group and a log file."""

from __future__ import annotations

import contextlib
import http.client
import os
import runpy
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"


class BenchError(RuntimeError):
    """Something the bench needs did not work: the run cannot go on."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def production_workers(database_url: str) -> int:
    """gunicorn.conf.py's `default_workers`: what production starts for this database."""
    rule = runpy.run_path(str(GUNICORN_CONF))["default_workers"]
    return int(rule(database_url, os.cpu_count() or 1))


@dataclass
class Children:
    """The long-running children of a run, by name; output to `<log_dir>/<name>.log`."""

    log_dir: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `command` in its own process group."""
        with (self.log_dir / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running[name] = child
        return child

    def check_alive(self) -> None:
        """Raise if a child died on its own: a crashed server makes every number meaningless."""
        for name, child in self.running.items():
            if child.poll() is not None:
                raise BenchError(f"{name} exited with {child.returncode}; see {name}.log")

    def stop(self, name: str, timeout: float = 15) -> None:
        """SIGTERM the child (gunicorn and nginx stop their workers), then SIGKILL its group."""
        child = self.running.pop(name, None)
        if child is None:
            return
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(child.pid)
                child.wait(timeout=timeout)
        _kill_group(child.pid)

    def stop_all(self) -> None:
        """Stop every child, newest first."""
        for name in reversed(list(self.running)):
            self.stop(name)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], str]:
    """One GET on 127.0.0.1: status, headers (lower-case names) and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def wait_for_http(port: int, path: str = "/", timeout: float = 60) -> None:
    """Wait until 127.0.0.1:`port` answers `path` with anything below 500."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http_get(port, path, timeout=2)[0] < 500:
                return
        time.sleep(0.1)
    raise BenchError(f"nothing answered on 127.0.0.1:{port}{path} within {timeout:.0f} s")


def flask_command(*args: str) -> list[str]:
    """`flask --app wsgi ARGS` with the venv's flask."""
    return [str(BIN / "flask"), "--app", "wsgi", *args]


def gunicorn_command(app_spec: str) -> list[str]:
    """The production command: `gunicorn -c gunicorn.conf.py APP`."""
    return [str(BIN / "gunicorn"), "-c", str(GUNICORN_CONF), app_spec]


def children_of(pid: int) -> list[int]:
    """The direct children of a process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces or parentheses; fields after the last ')' are fixed.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB (VmRSS), or None once it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None
