"""Letter pages for visitors without cookies, answered before Flask.

Most readers of a letter arrive from a link, with no cookie for this site. What Flask gives
each of them is the page's anonymous rendering (see `views/public.py`) with a new session:
a fresh CSRF secret in a new signed session cookie, the CSRF token signed from that secret,
and the form stamp of this second. `MicroCache` answers such a visitor from a template
learned from one of Flask's own answers, making the new secret, token, cookie and ETag the
way Flask, Flask-WTF and `views.caching` do, with their own signers.

Learning checks itself: the session cookie must hold nothing but the CSRF secret, the token
must be one our signer reads back, and the template must rebuild Flask's answer byte for
byte from the values the view says it used. Otherwise nothing is learned and every such
visitor goes through Flask. Anyone with a cookie, a conditional request or a HEAD always
goes through Flask.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.http import http_date

from petitions.signed import Prepared

#: environ key the letter view sets for a visitor without cookies (a `FirstVisit`)
FIRST_VISIT = "undersigned.first_visit"
#: Flask-WTF's salt for CSRF tokens
CSRF_SALT = "wtf-csrf-token"
#: request headers that make an answer depend on the client's copy: Werkzeug decides those
CONDITIONAL_HEADERS = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_RANGE",
    "HTTP_RANGE",
)


@dataclass(frozen=True, slots=True)
class FirstVisit:
    """What the letter view gave a visitor without cookies."""

    #: the anonymous rendering (`views.caching.PageWithHoles`): `fill()`, `etag_header()`
    page: Any
    #: when that rendering stops being served (the page store's clock)
    expires: float
    csrf_secret: str
    csrf_token: str
    stamp: str
    #: the form stamp of now; needs an app context
    make_stamp: Callable[[], str]


def signers(app: Flask) -> tuple[Prepared | None, Prepared, str]:
    """What signs a visitor's session and CSRF token, as Flask and Flask-WTF build them, with
    their keys derived once (`signed.Prepared`): the session cookie's serializer (None without
    a secret key), the CSRF token's, and the name of the CSRF field (and session key).

    They sign only a random CSRF secret (as the token, or alone in the session), which
    compression never shortens, so they do not try it (`Prepared`'s `compress=False`)."""
    config = app.config
    csrf = URLSafeTimedSerializer(
        config.get("WTF_CSRF_SECRET_KEY") or app.secret_key, salt=CSRF_SALT
    )
    sessions = app.session_interface.get_signing_serializer(app)
    return (
        Prepared(sessions, compress=False) if sessions is not None else None,
        Prepared(csrf, compress=False),
        config.get("WTF_CSRF_FIELD_NAME", "csrf_token"),
    )


def is_first_visit(environ: dict[str, Any]) -> bool:
    """A plain GET from someone with no cookie at all."""
    return (
        environ.get("REQUEST_METHOD") == "GET"
        and "HTTP_COOKIE" not in environ
        and not any(name in environ for name in CONDITIONAL_HEADERS)
    )


class FirstVisits:
    """Learns first-visit templates from Flask's answers, for one app."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stamp: tuple[Any, str] = (None, "")

    def stamp(self, make: Callable[[], str]) -> str:
        """The form stamp of this second (it signs the time in whole seconds)."""
        second = int(time.time())
        if self._stamp[0] != second:
            with self.app.app_context():
                self._stamp = (second, make())
        return self._stamp[1]

    def learn(
        self,
        environ: dict[str, Any],
        visit: FirstVisit,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> FirstVisitPage | None:
        """A template for Flask's answer to this first visit, or None if it cannot be one."""
        if not is_first_visit(environ) or not status.startswith("200 "):
            return None
        app = self.app
        sessions, csrf, field = signers(app)
        cookie_name = app.config["SESSION_COOKIE_NAME"]
        names = [name.lower() for name, _ in headers]
        cookies = [
            i
            for i, (name, value) in enumerate(headers)
            if name.lower() == "set-cookie" and value.startswith(cookie_name + "=")
        ]
        if sessions is None or len(cookies) != 1:
            return None
        if any(names.count(name) != 1 for name in ("etag", "content-length", "date")):
            return None
        cookie = headers[cookies[0]][1]
        value, separator, attributes = cookie[len(cookie_name) + 1 :].partition(";")
        if not separator or "expires=" in attributes.lower() or "max-age=" in attributes.lower():
            return None
        try:
            if sessions.loads(value) != {field: visit.csrf_secret}:
                return None
            if csrf.loads(visit.csrf_token) != visit.csrf_secret:
                return None
        except BadData:
            return None
        page = FirstVisitPage(
            owner=self,
            visit=visit,
            status=status,
            template=list(headers),
            field=field,
            csrf=csrf,
            sessions=sessions,
            cookie_at=cookies[0],
            cookie_prefix=cookie_name + "=",
            cookie_suffix=";" + attributes,
            etag_at=names.index("etag"),
            length_at=names.index("content-length"),
            date_at=names.index("date"),
        )
        # Nothing of this visitor's may stay in what others will be sent.
        holes = {cookies[0], page.etag_at, page.length_at, page.date_at}
        own = (visit.csrf_secret, visit.csrf_token, value)
        static = [header for i, header in enumerate(headers) if i not in holes]
        if any(mine in text for mine in own for header in static for text in header):
            return None
        filled = visit.page.fill({"csrf_token": "", "started": ""})
        if any(mine in filled for mine in own):
            return None
        date = headers[page.date_at][1]
        rebuilt = page.build(visit.csrf_secret, visit.csrf_token, value, visit.stamp, date)
        return page if rebuilt == (headers, body) else None


@dataclass(slots=True)
class FirstVisitPage:
    """Flask's answer to a first visit, with holes for the next visitor's own values."""

    owner: FirstVisits
    visit: FirstVisit
    status: str
    template: list[tuple[str, str]]
    field: str
    csrf: Prepared
    sessions: Prepared
    cookie_at: int
    cookie_prefix: str
    cookie_suffix: str
    etag_at: int
    length_at: int
    date_at: int

    def build(
        self, secret: str, token: str, cookie: str, stamp: str, date: str
    ) -> tuple[list[tuple[str, str]], bytes]:
        """Headers and body for a visitor given these values."""
        body = self.visit.page.fill({"csrf_token": token, "started": stamp}).encode()
        headers = self.template.copy()
        headers[self.cookie_at] = ("Set-Cookie", self.cookie_prefix + cookie + self.cookie_suffix)
        headers[self.etag_at] = (headers[self.etag_at][0], self.visit.page.etag_header(secret))
        headers[self.length_at] = (headers[self.length_at][0], str(len(body)))
        headers[self.date_at] = (headers[self.date_at][0], date)
        return headers, body

    def replay(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes] | None:
        """Answer a first visit as Flask would; None for any other request."""
        if not is_first_visit(environ):
            return None
        # As Flask-WTF's generate_csrf makes a session's secret and token.
        secret = hashlib.sha1(os.urandom(64)).hexdigest()  # noqa: S324 - a random value, not a digest
        token = self.csrf.dumps(secret)
        cookie = self.sessions.dumps({self.field: secret})
        stamp = self.owner.stamp(self.visit.make_stamp)
        headers, body = self.build(secret, token, cookie, stamp, http_date())
        start_response(self.status, headers)
        return [body]
