"""The SMTP sink: a lean SMTP server on 127.0.0.1 that logs when, and to whom, mail arrives.

Run as its own process (`python bench/smtp_sink.py PORT LOGFILE`), one line a recipient:
`<unix time of arrival> <recipient>`. It stands in for the relay a deployment hands its mail
to, sharing the bench's cores, so it speaks just enough ESMTP (PIPELINING offered) and never
parses a message: aiosmtpd spent about 0.5 ms of CPU a message, as much as the mail worker.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

EHLO = b"250-127.0.0.1\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"


class Sink(asyncio.Protocol):
    """One client connection: commands line by line, then each message up to its lone dot."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.buffer, self.in_data, self.recipients = out, bytearray(), False, []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Greet the client."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 127.0.0.1 bench sink\r\n")

    def data_received(self, data: bytes) -> None:
        """Answer every complete command and message received, in one write."""
        self.buffer += data
        replies = []
        while True:
            end = self.buffer.find(b"\r\n.\r\n" if self.in_data else b"\r\n")
            if end < 0:
                break
            line = bytes(self.buffer[:end])
            del self.buffer[: end + (5 if self.in_data else 2)]
            replies.append(self.accept() if self.in_data else self.reply(line))
        assert self.transport is not None
        self.transport.write(b"".join(replies))
        if replies and replies[-1].startswith(b"221"):
            self.transport.close()

    def reply(self, line: bytes) -> bytes:
        """The answer to one command."""
        verb = line[:4].upper()
        if verb == b"EHLO":
            return EHLO
        if verb in (b"MAIL", b"RSET"):
            self.recipients = []
        elif verb == b"RCPT":
            self.recipients.append(line[line.find(b"<") + 1 : line.rfind(b">")].decode())
        elif verb == b"DATA":
            self.in_data = True
            self.buffer[:0] = b"\r\n"  # a message may end at once: its dot follows this CRLF
            return b"354 end with <CRLF>.<CRLF>\r\n"
        elif verb == b"QUIT":
            return b"221 bye\r\n"
        return b"250 OK\r\n"

    def accept(self) -> bytes:
        """Log the message's recipients with its arrival time."""
        now = time.time()
        self.out.write("".join(f"{now:.6f} {rcpt}\n" for rcpt in self.recipients))
        self.out.flush()
        self.in_data, self.recipients = False, []
        return b"250 accepted\r\n"


def serve(port: int, log_path: Path) -> None:
    """Receive mail until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        with log_path.open("a", encoding="utf-8") as out:
            async with await loop.create_server(lambda: Sink(out), "127.0.0.1", port):
                await stop.wait()

    asyncio.run(main())


def arrivals(log_path: Path, prefix: str = "") -> dict[str, float]:
    """Arrival time of the first message to each recipient starting with `prefix`."""
    found: dict[str, float] = {}
    if log_path.exists():
        for line in log_path.read_text(encoding="utf-8").splitlines(keepends=True):
            stamp, _, rcpt = line.rstrip("\n").partition(" ")
            if line.endswith("\n") and rcpt.startswith(prefix) and rcpt not in found:
                found[rcpt] = float(stamp)
    return found


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
