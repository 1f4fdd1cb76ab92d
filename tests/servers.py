"""Real gunicorn servers for tests that need separate processes."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.mailbox import free_port

ROOT = Path(__file__).resolve().parent.parent


def start_gunicorn(
    database_url: str, workers: int | None = 1, **env: str
) -> tuple[subprocess.Popen, str]:
    """gunicorn with production settings on a free port; returns the process and its base URL.
    With `workers=None`, WEB_CONCURRENCY is left unset, so gunicorn.conf.py picks."""
    port = free_port()
    environment = {
        **os.environ,
        "UNDERSIGNED_ENV": "production",
        "SECRET_KEY": "shared-secret",
        "ADDRESS_HASH_KEY": "shared-hash-key",
        "UPDATES_KEY": "shared-updates-key",
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "SIGN_MIN_SECONDS": "0",
        "RATELIMIT_ENABLED": "0",
        **env,
    }
    if workers is None:
        del environment["WEB_CONCURRENCY"]
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            return process, base
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")


def stop(process: subprocess.Popen) -> str:
    """Stop a server; return what it wrote to stderr."""
    process.terminate()
    try:
        _, errors = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _, errors = process.communicate()
    return (errors or b"").decode(errors="replace")
