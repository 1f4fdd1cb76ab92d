"""The SMTP sink: a small SMTP server on 127.0.0.1 that logs when, and to whom, mail arrives.

Run as its own process (`python bench/smtp_sink.py PORT LOGFILE`), so receiving mail never
competes for the benchmark driver's interpreter lock. Each line is
`<unix time of arrival> <recipient>`, written and flushed as the message is accepted;
the driver reads the file to count deliveries and to time each email against its signature.

It stands in for the mail relay a deployment hands its mail to, which would run on another
machine or be written in C. It shares the benchmark's two cores with the app, so it is kept
lean: one `asyncio.Protocol` that speaks just enough ESMTP (EHLO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT; PIPELINING, 8BITMIME and SMTPUTF8 advertised) and never parses a message.
aiosmtpd, which the tests use as their SMTP server, spent about 0.5 ms of CPU a message
here, as much as the app's own mail worker.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

#: the most a message may hold; a longer one is refused (552), as a relay would
MAX_MESSAGE = 32 * 1024 * 1024
MAX_LINE = 2048
EHLO_REPLY = (
    b"250-127.0.0.1\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    b"250 SIZE %d\r\n" % MAX_MESSAGE
)


class SinkSession(asyncio.Protocol):
    """One client connection: commands line by line, then a message up to its lone dot."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.in_data = False
        self.recipients: list[str] = []
        self.sender = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Greet the client."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 127.0.0.1 ESMTP bench sink\r\n")

    def data_received(self, data: bytes) -> None:
        """Answer every complete command (and message) received, in one write."""
        self.buffer += data
        replies: list[bytes] = []
        closing = False
        while not closing:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_MESSAGE:
                        replies.append(b"552 message too big\r\n")
                        closing = True
                    break
                del self.buffer[: end + 5]
                self.in_data = False
                replies.append(self._accept())
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    replies.append(b"500 line too long\r\n")
                    closing = True
                break
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            reply, closing = self._command(line)
            replies.append(reply)
        if self.transport is not None:
            self.transport.write(b"".join(replies))
            if closing:
                self.transport.close()

    def _command(self, line: bytes) -> tuple[bytes, bool]:
        """The reply to one command line, and whether to close the connection after it."""
        verb = line[:4].upper()
        if verb == b"EHLO":
            return EHLO_REPLY, False
        if verb == b"HELO":
            return b"250 127.0.0.1\r\n", False
        if verb == b"MAIL":
            self.sender, self.recipients = True, []
            return b"250 OK\r\n", False
        if verb == b"RCPT":
            if not self.sender:
                return b"503 MAIL first\r\n", False
            start, end = line.find(b"<"), line.find(b">")
            if start < 0 or end < start:
                return b"501 syntax: RCPT TO:<address>\r\n", False
            self.recipients.append(line[start + 1 : end].decode("utf-8", "replace"))
            return b"250 OK\r\n", False
        if verb == b"DATA":
            if not self.recipients:
                return b"503 RCPT first\r\n", False
            self.in_data = True
            # A message may end at once ("DATA\r\n.\r\n"): its lone dot follows this CRLF.
            self.buffer[:0] = b"\r\n"
            return b"354 end with <CRLF>.<CRLF>\r\n", False
        if verb == b"RSET":
            self.sender, self.recipients = False, []
            return b"250 OK\r\n", False
        if verb == b"NOOP":
            return b"250 OK\r\n", False
        if verb == b"QUIT":
            return b"221 bye\r\n", True
        return b"500 command not recognized\r\n", False

    def _accept(self) -> bytes:
        """Log the message's recipients with its arrival time, and accept it."""
        now = time.time()
        self.out.write("".join(f"{now:.6f} {rcpt}\n" for rcpt in self.recipients))
        self.out.flush()
        self.sender, self.recipients = False, []
        return b"250 message accepted\r\n"


def serve(port: int, log_path: Path) -> None:
    """Receive mail until SIGTERM or SIGINT."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        with log_path.open("a", encoding="utf-8") as out:
            server = await loop.create_server(lambda: SinkSession(out), "127.0.0.1", port)
            print(f"SMTP sink on 127.0.0.1:{port}, logging to {log_path}", flush=True)
            async with server:
                await stop.wait()

    asyncio.run(main())


def arrivals(log_path: Path, prefix: str = "") -> dict[str, float]:
    """Arrival time of the first message to each recipient starting with `prefix`."""
    found: dict[str, float] = {}
    if not log_path.exists():
        return found
    with log_path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.endswith("\n"):
                break  # a line still being written
            stamp, _, rcpt = line[:-1].partition(" ")
            if rcpt.startswith(prefix) and rcpt not in found:
                found[rcpt] = float(stamp)
    return found


def count(log_path: Path, prefix: str = "") -> int:
    """How many messages reached the sink for recipients starting with `prefix`."""
    if not log_path.exists():
        return 0
    with log_path.open(encoding="utf-8") as lines:
        return sum(
            1 for line in lines if line.endswith("\n") and line.partition(" ")[2].startswith(prefix)
        )


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
