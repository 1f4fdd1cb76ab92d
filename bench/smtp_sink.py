"""The SMTP sink: aiosmtpd on 127.0.0.1, writing one line per recipient as mail arrives.

Run as its own process (`python bench/smtp_sink.py PORT LOGFILE`), so receiving mail never
competes for the benchmark driver's interpreter lock. Each line is
`<unix time of arrival> <recipient>`, written and flushed as the message is accepted;
the driver reads the file to count deliveries and to time each email against its signature.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO


class ArrivalLog:
    """aiosmtpd handler: accept everything, keep only when and to whom."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Note the arrival of each recipient's copy, then accept the message."""
        now = time.time()
        self.out.write("".join(f"{now:.6f} {rcpt}\n" for rcpt in envelope.rcpt_tos))
        self.out.flush()
        return "250 Message accepted"


def serve(port: int, log_path: Path) -> None:
    """Receive mail until SIGTERM or SIGINT."""
    from aiosmtpd.controller import Controller

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with log_path.open("a", encoding="utf-8") as out:
        controller = Controller(ArrivalLog(out), hostname="127.0.0.1", port=port)
        controller.start()
        print(f"SMTP sink on 127.0.0.1:{port}, logging to {log_path}", flush=True)
        try:
            stop.wait()
        finally:
            controller.stop()


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
