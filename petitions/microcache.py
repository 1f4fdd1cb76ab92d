"""Per-process caches of public reads, kept for about a second.

A letter with a million signers is read far more often than its numbers change, and the
pages already say "Counts as of". So each web process keeps, for `READ_CACHE_SECONDS`:

* `MicroCache`, WSGI middleware in front of Flask (inside ProxyFix): whole answers of views
  marked `@shared` (the API, the badge, the widget, the feed, the chart), keyed by scheme,
  path and query. A hit is answered without entering Flask, with exactly the headers the
  first answer had; conditional and HEAD requests go through Werkzeug's own
  `make_conditional`, so a matching If-None-Match still gets its 304. Hits under a
  shared rate limit (the API's) are charged to the same budget as Flask-Limiter's, with
  the same headers, and an address over its budget is handed to Flask for the usual 429.
* `pages`, a `TimedStore` the letter page fills with anonymous renderings, into which each
  visitor's own CSRF token and form stamp are spliced (see `views/public.py`); and, for
  visitors without any cookie, the whole answer from a template (`petitions.firstvisit`).

Only a 200 of a `@shared` view, with no Set-Cookie and no `private`/`no-store`, is kept, so
nothing that depends on a visitor's session is ever replayed to someone else. Memory is
bounded (8 MB a store, 1 MB an answer); a successful write request (a confirmation, an
organizer's or admin's action) empties this process's caches, and other processes catch up
within the TTL.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from flask import Flask, Response, request
from werkzeug.http import http_date
from werkzeug.wrappers import Response as WerkzeugResponse

from petitions.firstvisit import CONDITIONAL_HEADERS, FIRST_VISIT, FirstVisit, FirstVisits

#: environ key a `@shared` view sets: the name of its blueprint ("" for none)
SHARED = "undersigned.shared"
#: writes that change nothing the public reads, so they keep the caches (signing only
#: makes a pending signature; logging in changes only the visitor's own session)
QUIET_ENDPOINTS = frozenset({"public.sign"})
QUIET_BLUEPRINTS = frozenset({"auth"})

View = TypeVar("View", bound=Callable[..., Any])
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Budget(Protocol):
    """A rate limit charged from outside Flask (see `security.SharedLimitBudget`)."""

    #: lower-case names of the per-client headers the limit adds to every answer
    header_names: frozenset[str]

    def charge(self, environ: dict[str, Any]) -> list[tuple[str, str]] | None:
        """Count one request; its headers, or None when the client is over the limit."""


def shared(view: View) -> View:
    """Mark a view whose answers are the same for every visitor, so `MicroCache` may keep
    them. Such a view must not read the session."""

    @functools.wraps(view)
    def marked(*args: Any, **kwargs: Any) -> Any:
        request.environ[SHARED] = request.blueprint or ""
        return view(*args, **kwargs)

    return marked  # type: ignore[return-value]


class TimedStore:
    """A dict whose entries live `seconds`, bounded in total bytes (oldest out first)."""

    def __init__(self, seconds: float, max_bytes: int, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: dict[Any, tuple[float, int, Any]] = {}
        self._bytes = 0
        # gunicorn's sync workers have one thread, but `flask run` and threaded servers more
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        """The value stored under `key`, or None when absent or older than `seconds`."""
        found = self._entries.get(key)
        if found is None or found[0] <= self.clock():
            return None
        return found[2]

    def expiry(self, key: Any) -> float | None:
        """When the entry under `key` stops being served (clock time), or None if absent."""
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: Any, value: Any, size: int, expires: float | None = None) -> None:
        """Keep `value` for `seconds` (or until `expires`); make room by dropping expired,
        then oldest, entries."""
        if not self.seconds or size > self.max_bytes:
            return
        with self._lock:
            self._put(key, value, size, expires)

    def _put(self, key: Any, value: Any, size: int, expires: float | None) -> None:
        self._drop(key)
        if self._bytes + size > self.max_bytes:
            now = self.clock()
            for old in [k for k, (until, _, _) in self._entries.items() if until <= now]:
                self._drop(old)
            while self._entries and self._bytes + size > self.max_bytes:
                self._drop(next(iter(self._entries)))
        self._entries[key] = (
            self.clock() + self.seconds if expires is None else expires,
            size,
            value,
        )
        self._bytes += size

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: Any) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._bytes -= found[1]


@dataclass(slots=True)
class CachedAnswer:
    """A 200 as Flask sent it, without the per-client rate-limit headers."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes
    budget: Budget | None
    #: where the Date header Werkzeug added is, to be given the time of each replay
    date_at: int
    #: where the rate-limit headers were, to put each client's own back in their place
    limits_at: int


def http_date_now(_cached: list[Any] = [None, ""]) -> str:  # noqa: B006 - a one-second memo
    """The current time as an HTTP date, formatted at most once a second."""
    second = int(time.time())
    if _cached[0] != second:
        _cached[:] = [second, http_date(second)]
    return _cached[1]


class MicroCache:
    """WSGI middleware answering repeated public GETs from memory for `seconds`."""

    def __init__(
        self,
        app: WSGIApp,
        seconds: float,
        max_bytes: int = 8 * 1024 * 1024,
        max_answer: int = 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.seconds = seconds
        self.max_answer = max_answer
        self.answers = TimedStore(seconds, max_bytes, clock)
        self.pages = TimedStore(seconds, max_bytes, clock)
        #: per blueprint name, the rate limit all its routes share
        self.budgets: dict[str, Budget] = {}
        #: learns letter pages for visitors without cookies (see `petitions.firstvisit`)
        self.first_visits: FirstVisits | None = None

    @property
    def clock(self) -> Callable[[], float]:
        """The clock both stores read (monotonic seconds)."""
        return self.answers.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.answers.clock = self.pages.clock = clock

    def forget(self) -> None:
        """Empty both stores (after a write in this process)."""
        self.answers.clear()
        self.pages.clear()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if not self.seconds or (method != "GET" and method != "HEAD"):
            return self.app(environ, start_response)
        key = (
            environ.get("wsgi.url_scheme"),
            environ.get("SCRIPT_NAME", ""),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
        )
        answer = self.answers.get(key)
        if isinstance(answer, CachedAnswer):
            return self._replay(answer, environ, start_response)
        if answer is not None:  # a letter page for first visits only
            replayed = answer.replay(environ, start_response)
            return self.app(environ, start_response) if replayed is None else replayed
        if method == "HEAD":  # Werkzeug sends HEAD no body, so there is nothing to keep
            return self.app(environ, start_response)
        return self._fill(key, environ, start_response)

    def _replay(
        self, answer: CachedAnswer, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        headers = answer.headers.copy()  # the server may add to the list it is given
        if answer.date_at >= 0:
            headers[answer.date_at] = ("Date", http_date_now())
        if answer.budget is not None:
            try:
                extra = answer.budget.charge(environ)
            except Exception:  # storage trouble: Flask-Limiter's own handling decides
                extra = None
            if extra is None:  # over the limit: Flask answers the 429, as for any request
                return self.app(environ, start_response)
            headers[answer.limits_at : answer.limits_at] = extra
        if environ["REQUEST_METHOD"] == "GET" and not any(
            name in environ for name in CONDITIONAL_HEADERS
        ):
            start_response(answer.status, headers)
            return [answer.body]
        response = WerkzeugResponse(answer.body, status=answer.status, headers=headers)
        response.make_conditional(environ)
        return response(environ, start_response)

    def _fill(
        self, key: tuple[Any, ...], environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        sent: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            sent[:] = [status, headers]
            return start_response(status, headers, *exc_info)

        body_iter = self.app(environ, capture)
        mark = environ.get(SHARED)
        visit: FirstVisit | None = environ.get(FIRST_VISIT)
        if visit is not None and self.first_visits is not None and sent:
            body = read_all(body_iter)
            page = self.first_visits.learn(environ, visit, sent[0], sent[1], body)
            if page is not None and len(body) <= self.max_answer:
                self.answers.put(key, page, 2 * len(body), expires=visit.expires)
            return [body]
        if mark is None or not sent or not _keepable(sent[0], sent[1]):
            return body_iter
        body = read_all(body_iter)
        if len(body) > self.max_answer:
            return [body]
        budget = self.budgets.get(mark)
        per_client = budget.header_names if budget is not None else frozenset()
        headers = [(name, value) for name, value in sent[1] if name.lower() not in per_client]
        limits_at = next(
            (i for i, (name, _) in enumerate(sent[1]) if name.lower() in per_client), len(headers)
        )
        names = [name.lower() for name, _ in headers]
        date_at = names.index("date") if "date" in names else -1
        answer = CachedAnswer(sent[0], headers, body, budget, date_at, limits_at)
        self.answers.put(key, answer, len(body) + 64 * len(headers))
        return [body]


def read_all(body_iter: Iterable[bytes]) -> bytes:
    """A WSGI body, joined, with the iterable closed as WSGI asks."""
    try:
        return b"".join(body_iter)
    finally:
        close = getattr(body_iter, "close", None)
        if close is not None:
            close()


def _keepable(status: str, headers: list[tuple[str, str]]) -> bool:
    """Whether an answer of a `@shared` view may be replayed to anyone: a 200 that neither
    changed the session nor asks to be kept private.

    (`Vary: Cookie` is no sign: Flask-Login reads the session after every request, so Flask
    adds it to every answer; it is replayed like the other headers.)"""
    if not status.startswith("200 "):
        return False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "set-cookie":
            return False
        if lowered == "cache-control" and ("private" in value or "no-store" in value):
            return False
    return True


def install(app: Flask) -> MicroCache:
    """Put a `MicroCache` in front of `app` (before ProxyFix wraps both) and empty it after
    every successful write this process serves."""
    cache = MicroCache(app.wsgi_app, float(app.config.get("READ_CACHE_SECONDS", 0) or 0))
    cache.first_visits = FirstVisits(app)
    app.wsgi_app = cache  # type: ignore[method-assign]
    app.extensions["microcache"] = cache

    @app.after_request
    def forget_after_writes(response: Response) -> Response:
        if (
            request.method not in {"GET", "HEAD", "OPTIONS"}
            and response.status_code < 400
            and request.endpoint not in QUIET_ENDPOINTS
            and request.blueprint not in QUIET_BLUEPRINTS
        ):
            cache.forget()
        return response

    return cache


def for_app(app: Flask) -> MicroCache | None:
    """The app's `MicroCache`, if it has one."""
    return app.extensions.get("microcache")
