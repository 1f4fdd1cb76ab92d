"""Gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app`.

Environment:
    PORT             port to listen on, on 127.0.0.1 only (default 8000)
    BIND             where to listen instead, overriding PORT: `0.0.0.0:8000`, `unix:/run/us.sock`,
                     or several, comma-separated. Behind a reverse proxy keep the loopback default.
    WEB_CONCURRENCY  worker processes (default: `default_workers`, from DATABASE_URL and the cores)
"""

import logging
import os
import re

from gunicorn.glogging import Logger

# Unlike gunicorn's own default (0.0.0.0:$PORT when PORT is set), listen on loopback unless told.
_addresses = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT') or 8000}"
bind = [address.strip() for address in _addresses.split(",") if address.strip()]


def default_workers(database_url: str | None, cores: int) -> int:
    """Worker processes when WEB_CONCURRENCY is not set: cores + 1 on SQLite (the default when
    DATABASE_URL is unset), 2 x cores + 1 on any other database; at most 8.

    A sync worker waiting for PostgreSQL leaves its core to another, so there it pays to have
    more workers than cores. SQLite answers inside the worker, and only one process writes at
    a time: on 2 cores, 5 workers signing at once spent a quarter more of the machine on each
    signature than 3 did (they queue for the writer lock, are preempted holding it, and each
    transaction reloads pages the others changed), and reads gained nothing from the extra two.
    """
    sqlite = not database_url or database_url.startswith("sqlite")
    return min(cores + 1 if sqlite else 2 * cores + 1, 8)


workers = int(
    os.environ.get("WEB_CONCURRENCY")
    or default_workers(os.environ.get("DATABASE_URL"), os.cpu_count() or 1)
)
worker_class = "sync"
timeout = 30
graceful_timeout = 30

# No access log by default: confirmation, management and mailbox URLs carry secret tokens in
# their paths, and a log line would keep them. Turn it on only with a format that drops the path.
accesslog = None
errorlog = "-"  # stderr

#: a path in a log line (perhaps after a scheme and host): its first segment, then the rest,
#: which begins at a slash, a question mark or a percent sign (an encoded slash is routed as one)
REQUEST_TARGET = re.compile(
    r"""(?<![^\s'"(=])((?:[A-Za-z][A-Za-z0-9+.-]*://[^/\s'"]*)?/[^/?%\s'"]*[/?%])[^\s'"]+"""
)


def redact_request_targets(record: logging.LogRecord) -> bool:
    """Keep only the first segment of any path in a log line: `GET /c/...`, `/login?...`.

    gunicorn writes request lines when it refuses a request, when the app fails, and in the
    access log if one is turned on; token links (/c/, /w/, /account/, invitations) must not
    reach a log file, whatever route is added later.
    """
    message = record.getMessage()
    redacted = REQUEST_TARGET.sub(r"\1...", message)
    if redacted != message:
        record.msg, record.args = redacted, ()
    return True


class RedactingLogger(Logger):
    """gunicorn's own logger, with request targets cut short in every line (see above)."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            # Assigned, not added: a reload (HUP) builds a new logger for the same two logs.
            log.filters = [redact_request_targets]


logger_class = RedactingLogger

# Each worker builds its own app, so no database connection is shared across a fork.
preload_app = False

# Recycle workers now and then so a slow leak cannot grow without bound. Cached reads are
# answered thousands of times a second, and a worker takes a second or two to boot: with a
# narrow jitter every worker reached the limit within the same second and all restarted at
# once, leaving nobody to answer. A jitter half the limit spreads restarts out.
max_requests = 100_000
max_requests_jitter = 50_000

# A sync worker that accepts a connection waits on it until the request arrives. Browsers open
# connections ahead of need (preconnects), and a client may connect and then wait: each such
# connection would keep a worker from everyone else for as long as it stays silent. The kernel
# hands a TCP connection to accept() only once its first bytes have arrived (TCP_DEFER_ACCEPT),
# as nginx's `listen ... deferred` does; one silent for longer than this is handed over anyway.
DEFER_ACCEPT_SECONDS = 10


def when_ready(server):
    """Hold back silent TCP connections from the workers (see DEFER_ACCEPT_SECONDS)."""
    import socket

    defer = getattr(socket, "TCP_DEFER_ACCEPT", None)
    for listener in server.LISTENERS:
        if defer is not None and listener.sock.family in (socket.AF_INET, socket.AF_INET6):
            listener.sock.setsockopt(socket.IPPROTO_TCP, defer, DEFER_ACCEPT_SECONDS)
