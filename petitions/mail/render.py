"""An outbox message as an `EmailMessage`: its templates' text, with the HTML as alternative."""

from __future__ import annotations

from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid, parseaddr
from typing import Any

from flask import Flask

from petitions.db import utcnow
from petitions.models import OutboxMessage


class _HeaderClasses(HeaderRegistry):
    """The standard header classes, each built once: `HeaderRegistry` builds a new class for
    every header of every message, a third of the instructions a message took to write."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        built = self._built.get(name)
        if built is None:
            built = self._built[name] = super().__getitem__(name)
        return built


#: the `email` package's SMTP policy (CRLF line ends), with the header classes built once
POLICY = SMTP.clone(header_factory=_HeaderClasses())


def render_words(app: Flask, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject, text and HTML of `mail/<template>`: the `.txt` (whose first line is the
    subject) and the `.html`, filled with `context`."""
    text = app.jinja_env.get_template(f"mail/{template}.txt").render(context)
    first, _, body = text.partition("\n")
    subject = " ".join(first.removeprefix("Subject:").split())
    html = app.jinja_env.get_template(f"mail/{template}.html").render(context, subject=subject)
    return subject, body.lstrip("\n"), html


def compose(app: Flask, message: OutboxMessage) -> EmailMessage:
    """The message as MIME, From `MAIL_FROM`: plain text, with the HTML as an alternative.

    A row queued before migration 0004 carries its words already rendered.
    """
    if message.template is None:
        subject, text, html = message.subject or "", message.body_text or "", message.body_html
    else:
        subject, text, html = render_words(app, message.template, message.context or {})
    sender = app.config["MAIL_FROM"]
    email = EmailMessage(policy=POLICY)
    email["From"] = sender
    email["To"] = message.recipient or ""
    email["Subject"] = " ".join(subject.split())  # one line, whatever a title held
    email["Date"] = utcnow()
    email["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
    unsubscribe = (message.context or {}).get("list_unsubscribe")
    if unsubscribe:
        # One-click unsubscribe (RFC 8058): mail clients POST "List-Unsubscribe=One-Click" to it.
        email["List-Unsubscribe"] = f"<{unsubscribe}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps the message seven-bit, so any server takes it as it is.
    email.set_content(text, cte="quoted-printable")
    if html is not None:
        email.add_alternative(html, subtype="html", cte="quoted-printable")
    return email
