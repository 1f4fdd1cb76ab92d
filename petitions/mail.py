"""Writing email: queue a message in the outbox; in the worker, render it and write its bytes.

The request stores only a template name and the few plain values the template shows; the
worker renders `mail/<template>.txt` and `.html` when it sends, so no Jinja runs in a request.
Nothing here talks to an SMTP server.
"""

from __future__ import annotations

import binascii
import enum
import functools
import json
import os
import re
import secrets
from dataclasses import dataclass, fields, is_dataclass
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from sqlalchemy import insert

from petitions.db import FastStatement, Writes, utcnow
from petitions.models import OutboxMessage, Petition, Report, User
from petitions.models.outbox import OutboxStatus
from petitions.views.caching import PageWithHoles

#: what a mail template may show of each model, copied when the message is queued; nothing
#: else of the row (an address, a password hash) reaches the outbox
MAIL_FIELDS: dict[type, tuple[str, ...]] = {
    User: ("display_name", "is_admin"),
    Petition: ("id", "title", "addressed_to"),
    Report: ("kind", "message"),
}


def _plain(value: Any) -> Any:
    """`value` as JSON: a string, number, boolean or None; a dict or dataclass of those; or a
    model's MAIL_FIELDS."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in fields(value)}
    for model, names in MAIL_FIELDS.items():
        if isinstance(value, model):  # isinstance, so that `current_user` (a proxy) passes
            return {name: _plain(getattr(value, name)) for name in names}
    raise TypeError(f"an email's context cannot hold a {type(value).__name__}")


@functools.cache
def _template_names(folder: str) -> frozenset[str]:
    return frozenset(path.stem for path in Path(folder, "mail").glob("*.txt"))


#: the outbox row of a new message; built once, and run on the driver's cursor
_QUEUE = FastStatement(insert(OutboxMessage.__table__).returning(OutboxMessage.__table__.c.id))
#: the columns an `outbox_row` gives
OUTBOX_COLUMNS = (
    "recipient",
    "recipient_domain",
    "template",
    "context",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
)


def outbox_row(recipient: str, template: str, **context: Any) -> dict[str, Any]:
    """The outbox row that queues `mail/<template>` for `recipient`, every column given.

    A model object in `context` (a user, petition or report) is reduced here to the fields in
    MAIL_FIELDS, so the outbox holds no more than the message will show.
    """
    folder = os.path.join(current_app.root_path, current_app.template_folder or "templates")
    if template not in _template_names(folder):
        raise ValueError(f"there is no mail template {template!r}")
    now = utcnow()
    return {
        "recipient": recipient,
        "recipient_domain": recipient.rpartition("@")[2],
        "template": template,
        "context": {key: _plain(value) for key, value in context.items()},
        # the columns' defaults, given here so that no default has to be worked out
        "status": OutboxStatus.QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def queue_email(session: Writes, recipient: str, template: str, **context: Any) -> int:
    """Queue `mail/<template>` for `recipient`; the worker renders and sends it. Returns its id.

    The row (`outbox_row`) is written with one INSERT on the session's connection, in the
    session's transaction.
    """
    return queue_row(session, outbox_row(recipient, template, **context))


def queue_row(session: Writes, row: dict[str, Any]) -> int:
    """Write an `outbox_row` with one INSERT in the session's transaction; its id."""
    return int(_QUEUE(session.connection(), row))


@dataclass(frozen=True)
class RenderedEmail:
    """A message's words, before they become MIME."""

    subject: str
    text: str
    html: str | None


def render_email(app: Flask, template: str, context: dict[str, Any]) -> RenderedEmail:
    """Fill `mail/<template>.txt` (its first line is the subject) and `.html` with `context`.

    Jinja keeps each compiled template in the app's environment, so after the first message
    of a kind this is two renders and nothing else.
    """
    text = app.jinja_env.get_template(f"mail/{template}.txt").render(context)
    first, _, body = text.partition("\n")
    subject = first.removeprefix("Subject:").strip()
    html = app.jinja_env.get_template(f"mail/{template}.html").render(context, subject=subject)
    return RenderedEmail(subject=subject, text=body.lstrip("\n"), html=html)


#: context values that differ with every message (its link and its code); every other value
#: is the same for many messages
PER_MESSAGE = ("url", "code")
#: a per-message value that renders alike in text and HTML, escaped or not
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._~:/?#=+-]+")
#: how many renderings `EmailsWithHoles` keeps at most
KEPT_EMAILS = 64


@dataclass(frozen=True, slots=True)
class _Cut:
    """A rendered email with holes: its text (subject line first) and HTML, each cut as the
    signer pages are (`views.caching.PageWithHoles`)."""

    text: PageWithHoles
    html: PageWithHoles | None

    def fill(self, values: dict[str, str]) -> RenderedEmail:
        first, _, body = self.text.fill(values).partition("\n")
        html = self.html.fill(values) if self.html is not None else None
        return RenderedEmail(first, body, html)


class EmailsWithHoles:
    """Renders emails as `render_email` does, each kind once per set of shared values.

    The mail worker rendered two Jinja templates for every message, most of its time per
    confirmation email. Here a kind of email is rendered once with a random mark in place of
    each PER_MESSAGE value and cut at the marks; each message is then its values put in the
    holes. A cut is kept only if it gives, for the message it was made with, exactly what
    `render_email` gives; a template that does anything with those values but show them
    (a filter, a test) fails that check and is rendered each time. So are values that HTML
    would escape, and everything while templates reload from disk (development).
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._kept: dict[tuple[str, ...], _Cut | None] = {}

    def render(self, template: str, context: dict[str, Any]) -> RenderedEmail:
        """The email `template` with `context`, as `render_email` renders it."""
        holes = {name: context[name] for name in PER_MESSAGE if name in context}
        if self.app.jinja_env.auto_reload or not all(
            isinstance(value, str) and _PLAIN_VALUE.fullmatch(value) for value in holes.values()
        ):
            return render_email(self.app, template, context)
        shared = {name: value for name, value in context.items() if name not in holes}
        key = (template, *sorted(holes), json.dumps(shared, sort_keys=True, default=str))
        cut = self._kept.get(key, False)
        if cut is False:
            cut, words = self._learn(template, context, holes)
            if len(self._kept) >= KEPT_EMAILS:
                self._kept.clear()
            self._kept[key] = cut
            return words
        if cut is None:
            return render_email(self.app, template, context)
        return cut.fill(holes)

    def _learn(
        self, template: str, context: dict[str, Any], holes: dict[str, str]
    ) -> tuple[_Cut | None, RenderedEmail]:
        """The cut for this kind and shared values (None if it cannot be one), and this
        message rendered."""
        words = render_email(self.app, template, context)
        marks = {name: f"HOLE{secrets.token_hex(16)}" for name in holes}
        marked = render_email(self.app, template, {**context, **marks})
        text = f"{marked.subject}\n{marked.text}"
        html = None if marked.html is None else PageWithHoles.cut(marked.html, marks)
        cut = _Cut(PageWithHoles.cut(text, marks), html)
        return (cut if cut.fill(holes) == words else None), words


def emails_with_holes(app: Flask) -> EmailsWithHoles:
    """The app's `EmailsWithHoles`, made on first use."""
    kept = app.extensions.get("emails_with_holes")
    if kept is None:
        kept = app.extensions["emails_with_holes"] = EmailsWithHoles(app)
    return kept


def _quoted_printable(text: str) -> bytes:
    # CRLF line ends throughout (SMTP wants them and smtplib sends bytes as they are); the
    # final one also tells b2a_qp to break long lines with CRLF.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n").split("\n")
    return binascii.b2a_qp("\r\n".join(lines).encode() + b"\r\n", istext=True)


def _subject_header(subject: str) -> str:
    subject = " ".join(subject.split())  # one line, whatever a title held
    if subject.isascii() and len(subject) <= 68:
        return subject
    charset = "us-ascii" if subject.isascii() else "utf-8"
    return Header(subject, charset, header_name="Subject").encode(linesep="\r\n")


class MessageWriter:
    """Writes the bytes of each message directly, for one sender.

    `email.message.EmailMessage` parses every header it is given and flattens the whole
    message again, which was most of the worker's time. Our messages have one shape (text,
    or text and HTML as multipart/alternative, both UTF-8 quoted-printable), so they are
    written as RFC 5322, 2045 and 2047 describe; the tests parse them back.
    """

    def __init__(self, sender: str) -> None:
        name, address = parseaddr(sender)
        #: the envelope sender (MAIL FROM)
        self.envelope_from = address
        self.from_header = formataddr((name, address), charset="utf-8")
        self.domain = address.rpartition("@")[2] or "localhost"

    def write(self, recipient: str, email: RenderedEmail) -> bytes:
        """The message to `recipient`, ready for `smtplib.SMTP.sendmail`."""
        if not recipient or any(char in recipient for char in "\r\n\0"):
            raise ValueError("the recipient is not one address")
        head = (
            f"From: {self.from_header}\r\n"
            f"To: {recipient}\r\n"
            f"Subject: {_subject_header(email.subject)}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Message-ID: <{secrets.token_hex(16)}@{self.domain}>\r\n"
            "MIME-Version: 1.0\r\n"
        ).encode()
        text = _quoted_printable(email.text)
        if email.html is None:
            return head + _part_head("plain") + text
        # "=_" never occurs in quoted-printable text, so the boundary cannot appear in a part.
        boundary = f"=_{secrets.token_hex(12)}".encode()
        return b"".join(
            [
                head,
                b'Content-Type: multipart/alternative; boundary="%s"\r\n\r\n' % boundary,
                b"--%s\r\n" % boundary,
                _part_head("plain"),
                text,
                b"\r\n--%s\r\n" % boundary,
                _part_head("html"),
                _quoted_printable(email.html),
                b"\r\n--%s--\r\n" % boundary,
            ]
        )


def _part_head(subtype: str) -> bytes:
    return (
        b'Content-Type: text/%s; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" % subtype.encode()
    )
