"""Real SMTP servers for tests: aiosmtpd on a free port, keeping what it receives."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

LINK = re.compile(
    r"https?://\S+/(c|w|account/confirm|account/reset|account/email)/[A-Za-z0-9._\-]+"
)
CODE = re.compile(r"\b([0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4})\b")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    """One message as the SMTP server got it."""

    to: str
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part else ""

    @property
    def raw(self) -> str:
        return self.message.as_string()

    def link(self) -> str:
        match = LINK.search(self.text)
        assert match, f"no link in: {self.text}"
        return match.group(0)

    def code(self) -> str:
        match = CODE.search(self.text)
        assert match, f"no code in: {self.text}"
        return match.group(1)


def with_pipelining(session, hostname: str, responses: list[str]) -> list[str]:
    """EHLO's reply with PIPELINING (RFC 2920) among the extensions, as real relays offer it.

    aiosmtpd reads commands one line after another, so it handles pipelined commands; it
    just does not say so.
    """
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if self.box.pipelining:
            return with_pipelining(session, hostname, responses)
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.box.reject_code:
            return f"{self.box.reject_code} no thanks"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.box.lock:
            for rcpt in envelope.rcpt_tos:
                self.box.messages.append(Received(rcpt, message))
        return "250 Message accepted"


class Mailbox:
    """The SMTP server and what it received."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.reject_code: int | None = None
        #: whether EHLO offers PIPELINING
        self.pipelining = True
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.to.casefold() == address.casefold()]

    def last_to(self, address: str) -> Received:
        found = self.to(address)
        assert found, f"no mail to {address}; got {[m.to for m in self.messages]}"
        return found[-1]


class RawServer:
    """An SMTP server that keeps each message's bytes as they came over the wire."""

    def __init__(self, smtputf8: bool, pipelining: bool = True) -> None:
        self.pipelining = pipelining
        self.received: list[tuple[str, bytes]] = []
        #: the reply to every message instead of accepting it; {address} is filled in
        self.refuse_with: str | None = None
        self.controller = Controller(
            self, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=smtputf8
        )

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if self.pipelining:
            return with_pipelining(session, hostname, responses)
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_with:
            return self.refuse_with.format(address=envelope.rcpt_tos[0].lower())
        self.received.extend((rcpt, envelope.content) for rcpt in envelope.rcpt_tos)
        return "250 Message accepted"

    def parsed(self, index: int = -1) -> email.message.EmailMessage:
        return email.message_from_bytes(self.received[index][1], policy=email.policy.default)
