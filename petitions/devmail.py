"""Development mailbox: read the email the site sent, without any real mail server.

Registered only when DEV_MAILBOX is on. The dev runner starts a local SMTP server
that saves each message as a .eml file in DEV_MAILBOX_DIR; these pages list them.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template

bp = Blueprint("devmail", __name__, url_prefix="/dev/mailbox")

_NAME = re.compile(r"^[0-9A-Za-z_.-]+\.eml$")


def _folder() -> Path:
    return Path(current_app.config["DEV_MAILBOX_DIR"])


def _read(path: Path) -> dict[str, str]:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text_part = message.get_body(preferencelist=("plain",))
    return {
        "id": path.name,
        "to": str(message["To"]),
        "subject": str(message["Subject"]),
        "date": str(message["Date"] or ""),
        "text": text_part.get_content() if text_part else "",
    }


@bp.get("/")
def inbox():  # type: ignore[no-untyped-def]
    """Every message the site sent, newest first."""
    folder = _folder()
    paths = sorted(folder.glob("*.eml"), reverse=True) if folder.exists() else []
    return render_template("dev/mailbox.html", messages=[_read(p) for p in paths[:200]])


@bp.get("/<name>")
def message(name: str):  # type: ignore[no-untyped-def]
    """One message, as plain text with its links clickable."""
    path = _folder() / name
    if not _NAME.match(name) or not path.is_file():
        abort(404)
    return render_template("dev/message.html", message=_read(path))
