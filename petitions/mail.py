"""Writing email: render a message from templates and queue it in the outbox.

Nothing here talks to an SMTP server; the worker does that after the request commits.
"""

from __future__ import annotations

from typing import Any

from flask import render_template
from sqlalchemy.orm import Session

from petitions.models import OutboxMessage


def queue_email(session: Session, recipient: str, template: str, **context: Any) -> OutboxMessage:
    """Render `mail/<template>.txt` and `.html` into the outbox.

    The text template's first line is the subject.
    """
    text = render_template(f"mail/{template}.txt", **context)
    subject, _, body = text.partition("\n")
    html = render_template(f"mail/{template}.html", subject=subject, **context)
    message = OutboxMessage(
        recipient=recipient,
        recipient_domain=recipient.rpartition("@")[2],
        subject=subject.removeprefix("Subject:").strip(),
        body_text=body.lstrip("\n"),
        body_html=html,
    )
    session.add(message)
    return message
