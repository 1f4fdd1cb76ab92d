#!/usr/bin/env python3
"""Run Undersigned locally: `python3 dev.py serve` or `python3 dev.py test [pytest args...]`.

Needs only Python 3.11. It makes `.venv`, installs requirements-dev.txt into it whenever the
requirements files change, and re-executes itself inside it. Stdlib only until then.
"""

# This file's job is starting fixed commands of our own (pip, flask, gunicorn, pytest), never
# anything built from outside input, so Bandit's subprocess warnings don't apply here.
# ruff: noqa: S603, S606

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".requirements.sha256"
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
WEB_PORT = 8000
USAGE = "usage: python3 dev.py serve | python3 dev.py test [pytest args...]"


def requirements_hash() -> str:
    """Hash of the requirements files, so the venv is refreshed exactly when they change."""
    digest = hashlib.sha256()
    for name in REQUIREMENTS:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()


def bootstrap() -> None:
    """Make .venv and install the requirements if needed, then re-execute inside it."""
    python = BIN / "python"
    if not python.exists():  # missing, or a broken link to a Python that has gone
        print("dev.py: creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    wanted = requirements_hash()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        print("dev.py: installing requirements-dev.txt into .venv ...", flush=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        if subprocess.run([*pip, "-r", str(ROOT / "requirements-dev.txt")]).returncode != 0:
            sys.exit("dev.py: pip install failed; fix the error above and run again.")
        STAMP.write_text(wanted + "\n")
    if Path(sys.prefix).resolve() != VENV.resolve():
        if os.environ.get("UNDERSIGNED_DEV_REEXEC"):
            sys.exit(f"dev.py: re-executed with {python} but still not inside .venv.")
        os.environ["UNDERSIGNED_DEV_REEXEC"] = "1"
        os.execv(python, [str(python), str(ROOT / "dev.py"), *sys.argv[1:]])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MailboxHandler:
    """aiosmtpd handler that saves every message as `<timestamp-ns>.eml` in a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Write the raw message under a temporary name, then rename it into place."""
        stamp = time.time_ns()
        while (self.folder / f"{stamp}.eml").exists():
            stamp += 1
        temporary = self.folder / f".{stamp}.tmp"  # not *.eml: the mailbox page never sees it
        temporary.write_bytes(envelope.original_content or b"")
        os.replace(temporary, self.folder / f"{stamp}.eml")
        return "250 Message accepted for delivery"


def run_flask(*args: str, capture: bool = False) -> str:
    """Run `flask --app wsgi ARGS` in the venv; exit dev.py if it fails."""
    command = [str(BIN / "flask"), "--app", "wsgi", *args]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        print(done.stdout or "", end="")
        sys.exit(f"dev.py: `flask {' '.join(args)}` failed (exit {done.returncode}).")
    return (done.stdout or "").strip()


def stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """Ask every child to stop, then kill whatever is still running after 10 seconds."""
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    for child in children.values():
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # its own session: takes its workers too
            child.wait()


def serve() -> int:
    """Database, demo data, SMTP mailbox, mail worker and gunicorn, until Ctrl+C."""
    from aiosmtpd.controller import Controller

    # Stop cleanly on Ctrl+C, `kill` or a closed terminal, even if started with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    os.environ["UNDERSIGNED_ENV"] = "development"
    from config import DevelopmentConfig

    run_flask("db", "upgrade")
    demo = run_flask("seed-demo", capture=True)
    mailbox = Path(DevelopmentConfig.DEV_MAILBOX_DIR)
    mailbox.mkdir(parents=True, exist_ok=True)
    controller = Controller(MailboxHandler(mailbox), hostname="127.0.0.1", port=free_port())
    controller.start()
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(controller.port))
    os.environ.update(PORT=str(WEB_PORT), WEB_CONCURRENCY="2")
    # Children get their own session, so Ctrl+C reaches only us and we stop them in order.
    commands = {
        "mail worker": [str(BIN / "flask"), "--app", "wsgi", "worker", "--interval", "0.5"],
        "web server": [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            children[name] = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
        print(
            "\n" + "=" * 64,
            f"  Undersigned is running: http://127.0.0.1:{WEB_PORT}",
            f"  Mailbox (every email the site sends): http://127.0.0.1:{WEB_PORT}/dev/mailbox/",
            f"  SMTP catcher on 127.0.0.1:{controller.port}, saving to {mailbox}",
            *(f"  {line}" for line in demo.splitlines()),
            "  Ctrl+C stops everything.",
            "=" * 64 + "\n",
            sep="\n",
            flush=True,
        )
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"dev.py: the {name} exited ({child.returncode}); stopping the rest.")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ndev.py: stopping ...", flush=True)
        return 0
    finally:
        stop(children)
        controller.stop()


def main() -> int:
    """Check the command, bootstrap the venv, then serve or test."""
    command, *args = sys.argv[1:] or [""]
    if command not in {"serve", "test"} or (command == "serve" and args):
        print(USAGE, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    bootstrap()
    if command == "test":
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])
    try:
        return serve()
    except KeyboardInterrupt:  # Ctrl+C during `db upgrade` or `seed-demo`
        return 130


if __name__ == "__main__":
    sys.exit(main())
