"""Real SMTP servers for tests: aiosmtpd on a free port, keeping what it receives, and
`ScriptedServer`, a small one of our own that can be told to refuse, or to hang up, at a
given point of a given message."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

LINK = re.compile(
    r"https?://\S+/(c|w|account/confirm|account/reset|account/email|account/invitations)/"
    r"[A-Za-z0-9._\-]+"
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
        code = self.box.reject_only.get(address.lower()) or self.box.reject_code
        if code:
            return f"{code} no thanks"
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
        #: a reply code for some addresses only (lower-case), e.g. {"gone@home.example": 550}
        self.reject_only: dict[str, int] = {}
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


@dataclass
class Transaction:
    """One message as `ScriptedServer` got it: its envelope and its bytes exactly."""

    sender: str
    recipient: str
    #: the MAIL command's parameters, such as "SMTPUTF8"
    options: str
    data: bytes


class ScriptedServer:
    """An SMTP server on 127.0.0.1 that offers PIPELINING (unless `pipelining` is off).

    It reads what comes in strictly in order, as a relay does: command lines, and after
    DATA's 354 a message up to its lone dot. It keeps every message it accepts in
    `received`, and every command it could not make sense of in `confused`. A test can make
    it refuse a recipient at RCPT (`refuse_rcpt`), answer DATA with 354 even though no
    recipient was accepted (`data_without_recipients`, as some servers do), refuse a
    message once its content is in (`refuse_data`), or answer 421 and close (or just hang
    up) when the Nth message of its life reaches a given point (`close_at`). It runs its
    own event loop in a thread, as aiosmtpd's Controller does.
    """

    def __init__(self, pipelining: bool = True, smtputf8: bool = True) -> None:
        self.port = free_port()
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self.received: list[Transaction] = []
        #: replies that said the server was confused (500, 503), with the line they answered
        self.confused: list[str] = []
        #: address -> the reply to its RCPT, e.g. "550 5.1.1 <{address}>: no such user"
        self.refuse_rcpt: dict[str, str] = {}
        #: answer DATA with 354 when no recipient was accepted, and the message with 554
        self.data_without_recipients = False
        #: address -> the reply to its message's content (after the final dot)
        self.refuse_data: dict[str, str] = {}
        #: (N, point): when the Nth MAIL command this server gets (counting from 1) reaches
        #: "MAIL", "RCPT", "DATA" or "content" (the message and its final dot), the server
        #: answers `close_reply` and closes; once only
        self.close_at: tuple[int, str] | None = None
        #: None: close without a word (and after keeping the message, at "content")
        self.close_reply: str | None = "421 4.3.2 closing for maintenance"
        #: how many MAIL commands arrived
        self.mail_count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sessions: set[_ScriptedSession] = set()

    def start(self) -> None:
        """Listen on `port` in a thread of its own."""
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            server = loop.run_until_complete(
                loop.create_server(lambda: _ScriptedSession(self), "127.0.0.1", self.port)
            )
            self._loop = loop
            ready.set()
            loop.run_forever()
            server.close()
            for session in list(self._sessions):
                session.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="scripted-smtp", daemon=True)
        self._thread.start()
        assert ready.wait(5), "the SMTP server did not start"

    def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = self._thread = None


def _address(line: bytes) -> tuple[str, str]:
    """The address between the angle brackets of a MAIL or RCPT line, and what follows."""
    start = line.find(b"<")
    end = line.find(b">", start)
    if start < 0 or end < 0:
        raise ValueError("no <address>")
    return line[start + 1 : end].decode(), line[end + 1 :].strip().decode()


class _ScriptedSession(asyncio.Protocol):
    """One connection to a ScriptedServer: command lines and DATA messages."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closing = False
        self.in_data = False
        self._reset()

    def _reset(self) -> None:
        """End the mail transaction."""
        self.sender: str | None = None
        self.options = ""
        self.recipients: list[str] = []
        self.number = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Greet the client."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._sessions.add(self)
        transport.write(b"220 127.0.0.1 ESMTP test server\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        self.server._sessions.discard(self)

    def close(self) -> None:
        """Drop the connection."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Answer, in order and in one write, everything complete that has come in."""
        self.buffer += data
        replies: list[str] = []
        while not self.closing:
            if self.in_data:
                # The message ends at a lone dot; `_command` put a CRLF in front of it.
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    break
                stuffed = bytes(self.buffer[2 : end + 2])
                del self.buffer[: end + 5]
                self.in_data = False
                reply = self._content(re.sub(rb"(?m)^\.", b"", stuffed))
            else:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    break
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                reply = self._command(line)
                if reply is not None and reply[:3] in ("500", "503"):
                    self.server.confused.append(f"{reply[:3]} to {line[:40]!r}")
            if reply is not None:
                replies.append(reply + "\r\n")
        if self.transport is not None:
            self.transport.write("".join(replies).encode())
            if self.closing:
                self.transport.close()

    def _closes(self, point: str) -> str | None:
        """If this message at this point is `close_at`: the reply (or None) that closes the
        connection."""
        if self.server.close_at != (self.number, point):
            return None
        self.server.close_at = None
        self.closing = True
        return self.server.close_reply

    def _command(self, line: bytes) -> str | None:
        """The reply to one command line."""
        verb = line[:4].upper()
        if verb == b"EHLO":
            offers = ["127.0.0.1", "8BITMIME"]
            if self.server.pipelining:
                offers.append("PIPELINING")
            if self.server.smtputf8:
                offers.append("SMTPUTF8")
            return "\r\n".join(f"250-{offer}" for offer in offers) + "\r\n250 SIZE 33554432"
        if verb in (b"HELO", b"NOOP"):
            return "250 OK"
        if verb == b"RSET":
            self._reset()
            return "250 OK"
        if verb == b"QUIT":
            self.closing = True
            return "221 bye"
        if verb == b"MAIL":
            self.server.mail_count += 1
            if self.sender is not None:
                return "503 5.5.1 nested MAIL command"
            self.sender, self.options = _address(line)
            self.number = self.server.mail_count
            closing = self._closes("MAIL")
            return closing if self.closing else "250 2.1.0 OK"
        if verb == b"RCPT":
            closing = self._closes("RCPT")
            if self.closing:
                return closing
            if self.sender is None:
                return "503 5.5.1 MAIL first"
            address, _ = _address(line)
            if not address.isascii() and "SMTPUTF8" not in self.options.upper():
                return "553 5.6.7 SMTPUTF8 needed for this address"
            if address in self.server.refuse_rcpt:
                return self.server.refuse_rcpt[address].format(address=address)
            self.recipients.append(address)
            return "250 2.1.5 OK"
        if verb == b"DATA":
            closing = self._closes("DATA")
            if self.closing:
                return closing
            if self.sender is None:
                return "503 5.5.1 MAIL first"
            if not self.recipients and not self.server.data_without_recipients:
                return "554 5.5.1 no valid recipients"
            self.in_data = True
            # A message may end at once ("DATA\r\n.\r\n"): its lone dot follows this CRLF.
            self.buffer[:0] = b"\r\n"
            return "354 end with <CRLF>.<CRLF>"
        return "500 5.5.2 command not recognized"

    def _content(self, data: bytes) -> str | None:
        """Keep a complete message, or refuse it; the transaction ends either way."""
        closing = self._closes("content")
        sender, recipients, options = self.sender or "", self.recipients, self.options
        self._reset()
        if closing is not None:
            return closing  # 421: the message is not taken
        if not recipients:
            return "554 5.5.1 no valid recipients"
        refusals = [self.server.refuse_data[r] for r in recipients if r in self.server.refuse_data]
        if refusals and not self.closing:
            return refusals[0].format(address=recipients[0])
        self.server.received.extend(
            Transaction(sender, recipient, options, data) for recipient in recipients
        )
        # Closing without a word: the message came in, but its sender never hears so.
        return None if self.closing else "250 2.0.0 OK: queued"
