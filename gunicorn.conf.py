"""Gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app`.

Environment:
    PORT             port to listen on, on 127.0.0.1 only (default 8000)
    BIND             where to listen instead, overriding PORT: `0.0.0.0:8000`, `unix:/run/us.sock`,
                     or several, comma-separated. Behind a reverse proxy keep the loopback default.
    WEB_CONCURRENCY  worker processes (default 2 x cores + 1, at most 8)
"""

import os

# Unlike gunicorn's own default (0.0.0.0:$PORT when PORT is set), listen on loopback unless told.
_addresses = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT') or 8000}"
bind = [address.strip() for address in _addresses.split(",") if address.strip()]
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * (os.cpu_count() or 1) + 1, 8))
worker_class = "sync"
timeout = 30
graceful_timeout = 30

# No access log by default: confirmation, management and mailbox URLs carry secret tokens in
# their paths, and a log line would keep them. Turn it on only with a format that drops the path.
accesslog = None
errorlog = "-"  # stderr

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
