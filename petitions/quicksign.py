"""Signatures from anonymous visitors, taken before Flask.

A rush of signers is what a letter's best hour looks like, and each signature through Flask,
Flask-WTF, WTForms and an ORM session cost several times the work of storing it. Almost
every one of them is the same request: an anonymous visitor whose session holds only its
CSRF secret, posting a well-filled form to an open letter. `QuickSign` takes exactly those:

* the checks are Flask's own, made with the same keys and salts: the session cookie (read
  with Flask's signer), the CSRF token (as Flask-WTF reads it, including its Referer check
  over HTTPS), the sign form's rules (`forms.signing.plain_sign_request`, held to SignForm's
  answers by the tests), the letter's signing rules and the per-address limit (charged to
  Flask-Limiter's own counters);
* the writes are `services.signing.sign`'s, on a bare connection instead of a Session, so an
  address that signed before takes the same path, and gets the same answer, as through Flask;
* the answer is Flask's, from a template learned from one of Flask's own answers to a
  signature on the same letter: the "check your email" page with this signer's handle and
  CSRF token in its holes, and this signer's rate-limit headers, Date and Content-Length.
  Learning checks itself: the template must rebuild Flask's answer byte for byte from the
  values the view says it used, and an answer that sets a cookie is never learned.

Anything else (another cookie, a session holding more than a CSRF secret, a form SignForm
might refuse, an address over its limit, a closed letter, no template yet, a database error
before the commit) goes to Flask untouched, which answers it as it always did.
"""

from __future__ import annotations

import hmac
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Flask
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.http import parse_cookie

from petitions import microcache
from petitions.db import CoreWrites, utcnow
from petitions.forms.signing import plain_sign_request
from petitions.models.errors import DomainError
from petitions.services import signing

#: environ key the sign view sets after a signature it answered with the kept page
SIGNED = "undersigned.signed"
#: what a signature POST may carry at most; larger bodies go to Flask
MAX_BODY = 16 * 1024
#: the sign route (the slug as `views.public.SLUG` reads it)
_SIGN_PATH = re.compile(r"/p/([a-z0-9][a-z0-9-]{0,79})/sign")
_FORM = "application/x-www-form-urlencoded"

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Signed:
    """What the sign view answered a signature with: the letter, the signer's handle and the
    CSRF token in the "check your email" page it sent."""

    slug: str
    handle: str
    csrf_token: str


@dataclass(slots=True)
class SignAnswer:
    """Flask's answer to a signature on one letter, with holes for the next signer's values."""

    status: str
    headers: list[tuple[str, str]]
    #: the kept "check your email" page (`views.caching.PageWithHoles`)
    page: Any
    #: when the page stops being kept (the signer-page store's clock)
    expires: float
    #: where the Date header is, or -1
    date_at: int
    length_at: int
    #: where the rate-limit headers go (removed from `headers`)
    limits_at: int

    def build(
        self, handle: str, csrf_token: str, limits: list[tuple[str, str]], date: str
    ) -> tuple[list[tuple[str, str]], bytes]:
        """Headers and body for a signer given these values."""
        body = self.page.fill({"csrf_token": csrf_token, "handle": handle}).encode()
        headers = self.headers.copy()
        if self.date_at >= 0:  # servers add their own Date; a WSGI app rarely sends one
            headers[self.date_at] = (headers[self.date_at][0], date)
        headers[self.length_at] = (headers[self.length_at][0], str(len(body)))
        headers[self.limits_at : self.limits_at] = limits
        return headers, body


class QuickSign:
    """WSGI middleware in front of Flask that takes ordinary signatures itself."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.flask = app
        self.app = wsgi_app
        self.answers: dict[str, SignAnswer] = {}
        #: the sign route's per-address limit, charged outside Flask (`security.SharedLimitBudget`)
        self.budget: Any = None
        self.store: Callable[[], microcache.TimedStore | None] = lambda: None
        self._keys: tuple[Any, ...] = ()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        match = _SIGN_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or self.budget is None:
            return self.app(environ, start_response)
        slug = match.group(1)
        secret = self._csrf_secret(environ)
        if secret is None:
            return self.app(environ, start_response)
        answer = self.answers.get(slug)
        store = self.store()
        if answer is None or store is None or answer.expires <= store.clock():
            return self._learn(slug, environ, start_response)
        body = _read_body(environ)
        if body is None:
            return self.app(environ, start_response)
        try:
            quick = self._sign(slug, secret, answer, environ, body)
        except Exception:  # nothing was committed: Flask answers, as it would have
            log.exception("a signature taken before Flask failed; Flask takes it")
            quick = None
        if quick is None:
            return self.app(environ, start_response)
        start_response(answer.status, quick[0])
        return [quick[1]]

    # -- checks -------------------------------------------------------------------------

    def _serializers(self) -> tuple[Any, URLSafeTimedSerializer, str]:
        """Flask's session signer, Flask-WTF's token signer and the CSRF field's name."""
        app = self.flask
        config = app.config
        keys = (
            app.secret_key,
            config.get("WTF_CSRF_SECRET_KEY"),
            config.get("SECRET_KEY_FALLBACKS"),
        )
        if self._keys[:1] != (keys,):
            csrf = URLSafeTimedSerializer(
                config.get("WTF_CSRF_SECRET_KEY") or app.secret_key, salt="wtf-csrf-token"
            )
            sessions = app.session_interface.get_signing_serializer(app)
            self._keys = (keys, (sessions, csrf, config.get("WTF_CSRF_FIELD_NAME", "csrf_token")))
        return self._keys[1]

    def _csrf_secret(self, environ: dict[str, Any]) -> str | None:
        """The CSRF secret of a session that holds nothing else, sent as the only cookie."""
        header = environ.get("HTTP_COOKIE")
        if not header:
            return None
        cookies = parse_cookie(header)
        name = self.flask.config["SESSION_COOKIE_NAME"]
        if len(cookies) != 1 or len(cookies.getlist(name)) != 1:
            return None
        sessions, _csrf, field = self._serializers()
        if sessions is None:
            return None
        max_age = int(self.flask.permanent_session_lifetime.total_seconds())
        try:
            data = sessions.loads(cookies[name], max_age=max_age)
        except BadData:
            return None
        if not isinstance(data, dict) or data.keys() != {field}:
            return None
        secret = data[field]
        return secret if isinstance(secret, str) else None

    def _csrf_ok(self, environ: dict[str, Any], secret: str, token: str | None) -> bool:
        """Flask-WTF's CSRFProtect check of the form's token (and, over HTTPS, the Referer)."""
        config = self.flask.config
        if not config.get("WTF_CSRF_ENABLED", True) or not config.get(
            "WTF_CSRF_CHECK_DEFAULT", True
        ):
            return False  # unusual set-ups are Flask's to judge
        if environ.get("wsgi.url_scheme") == "https" and config.get("WTF_CSRF_SSL_STRICT", True):
            referrer = urlsplit(environ.get("HTTP_REFERER", ""))
            host = urlsplit(f"https://{environ.get('HTTP_HOST', '')}/")
            try:
                same = (referrer.scheme, referrer.hostname, referrer.port) == (
                    host.scheme,
                    host.hostname,
                    host.port,
                )
            except ValueError:
                return False
            if not same:
                return False
        if not token:
            return False
        _sessions, csrf, _field = self._serializers()
        try:
            signed = csrf.loads(token, max_age=config.get("WTF_CSRF_TIME_LIMIT", 3600))
        except BadData:
            return False
        return isinstance(signed, str) and hmac.compare_digest(secret, signed)

    # -- the signature ------------------------------------------------------------------

    def _sign(
        self,
        slug: str,
        secret: str,
        answer: SignAnswer,
        environ: dict[str, Any],
        body: bytes,
    ) -> tuple[list[tuple[str, str]], bytes] | None:
        """Take the signature and build Flask's answer; None when Flask must judge it."""
        if environ.get("CONTENT_TYPE") != _FORM:
            return None
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            return None
        fields = dict(pairs)
        if len(fields) != len(pairs):
            return None
        if not self._csrf_ok(environ, secret, fields.get("csrf_token")):
            return None
        cache = microcache.for_app(self.flask)
        rules = cache.pages.get(("signing rules", slug)) if cache is not None else None
        if rules is None or not rules.is_open:
            return None
        with self.flask.app_context():
            request = plain_sign_request(fields)
            if request is None:
                return None
            try:
                signing.check_allowed(rules, request.email)
            except DomainError:
                return None
            limits = self.budget.charge(environ)
            if limits is None:  # over the limit: Flask answers the 429
                return None
            _sessions, csrf, _field = self._serializers()
            token = csrf.dumps(secret)  # as Flask-WTF's generate_csrf makes it
            writes = CoreWrites(self.flask.extensions["db_write_engine"])
            try:
                handle = signing.sign(writes, rules, request, utcnow())
                writes.commit()
            except DomainError:
                return None
            finally:
                writes.close()
        # Nothing after the commit can fail, so Flask never takes a signature a second time.
        return answer.build(handle, token, limits, microcache.http_date_now())

    # -- learning -----------------------------------------------------------------------

    def _learn(
        self, slug: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Let Flask answer, and keep its answer as the template for this letter if it can be
        one."""
        sent: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            sent[:] = [status, headers]
            return start_response(status, headers, *exc_info)

        body_iter = self.app(environ, capture)
        signed: Signed | None = environ.get(SIGNED)
        if signed is None or signed.slug != slug or not sent:
            return body_iter
        body = microcache.read_all(body_iter)
        answer = self._template(signed, environ, sent[0], sent[1], body)
        if answer is not None:
            self.answers[slug] = answer
        return [body]

    def _template(
        self,
        signed: Signed,
        environ: dict[str, Any],
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> SignAnswer | None:
        """A template for Flask's answer to this signature, or None if it cannot be one."""
        store = self.store()
        key = ("check_email", signed.slug)
        page = store.get(key) if store is not None else None
        expires = store.expiry(key) if store is not None else None
        if page is None or expires is None or not status.startswith("200 "):
            return None
        names = [name.lower() for name, _ in headers]
        if "set-cookie" in names or names.count("content-length") != 1 or names.count("date") > 1:
            return None
        limit_names = self.budget.header_names if self.budget.enabled else frozenset()
        at = [i for i, name in enumerate(names) if name in limit_names]
        if len(at) != len(limit_names) or (at and at != list(range(at[0], at[0] + len(at)))):
            return None
        limits = [headers[i] for i in at]
        static = [header for i, header in enumerate(headers) if i not in at]
        static_names = [name.lower() for name, _ in static]
        answer = SignAnswer(
            status=status,
            headers=static,
            page=page,
            expires=expires,
            date_at=static_names.index("date") if "date" in static_names else -1,
            length_at=static_names.index("content-length"),
            limits_at=at[0] if at else 0,
        )
        # Nothing of this signer's may stay in what the next signer is sent.
        own = (signed.handle, signed.csrf_token)
        if any(mine in text for mine in own for header in static for text in header):
            return None
        if any(mine in page.fill({"csrf_token": "", "handle": ""}) for mine in own):
            return None
        date = headers[names.index("date")][1] if "date" in names else ""
        rebuilt = answer.build(signed.handle, signed.csrf_token, limits, date)
        return answer if rebuilt == (headers, body) else None


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The request body, read whole and put back for Flask; None when it is too long to take
    here or its length is not given."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body if len(body) == length else None


def install(app: Flask) -> QuickSign:
    """Put a `QuickSign` in front of Flask (behind the read cache and ProxyFix); it takes
    signatures once `budget` is given the sign route's limit."""
    quick = QuickSign(app, app.wsgi_app)
    quick.store = lambda: app.extensions.get("signer_pages")
    app.wsgi_app = quick  # type: ignore[method-assign]
    app.extensions["quicksign"] = quick
    return quick
