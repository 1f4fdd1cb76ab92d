"""Signatures and confirmations from anonymous visitors, taken before Flask.

A rush of signers is what a letter's best hour looks like, and each signature or
confirmation through Flask, Flask-WTF, WTForms and an ORM session cost several times the work
of storing it. Almost every one of them is the same request: an anonymous visitor whose
session holds only its CSRF secret, posting a well-filled sign form to an open letter, or the
Confirm button of a link that can confirm. `QuickSign` takes exactly those:

* the checks are Flask's own, made with the same keys and salts: the session cookie (read
  with Flask's signer), the CSRF token (as Flask-WTF reads it, including its Referer check
  over HTTPS), the sign form's rules (`forms.signing.plain_sign_request`, held to SignForm's
  answers by the tests), the letter's signing rules (kept as Flask keeps them, and read here
  when they are not), the per-address sign limit (charged to
  Flask-Limiter's own counters) and the link's checks (`services.signing.pending_by_link`);
* the writes are `services.signing`'s, on bare connections instead of Sessions (kept by the
  process between requests: `db.KeptConnections`), so an address that signed before
  takes the same path, and gets the same answer, as through Flask; after a confirmation
  this process's read caches are emptied, as after any write through Flask;
* the answer is Flask's, from a template learned from one of Flask's own answers on the same
  letter: the kept "check your email" or "confirmed" page (`views.signer_pages`) with this
  signer's values in its holes, and this signer's rate-limit headers and Content-Length.
  Learning checks itself: the template must rebuild Flask's answer byte for byte from the
  values the view says it used, and an answer that sets a cookie is never learned.

Anything else (another cookie, a session holding more than a CSRF secret, a form SignForm
might refuse, an address over its limit, a closed letter, a link that cannot confirm, no
template yet, a database error before the commit) goes to Flask untouched, which answers it
as it always did, and teaches this a template when it can.
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
from flask_wtf.csrf import same_origin
from itsdangerous import BadData
from werkzeug.exceptions import SecurityError
from werkzeug.http import parse_cookie
from werkzeug.sansio.utils import get_host

from petitions import firstvisit, microcache
from petitions.db import CoreWrites, KeptConnections, KeptWrites, utcnow
from petitions.models.errors import DomainError
from petitions.signed import Prepared
from petitions.signing import service as signing
from petitions.signing.forms import plain_sign_request

#: environ key of the kept signer page that answered a request (an `Answered`)
ANSWERED = "undersigned.answered"
#: environ key set once this request was counted against the sign limit here
LIMIT_CHARGED = "undersigned.limit_charged"
#: what a POST taken here may carry at most; larger bodies go to Flask
MAX_BODY = 16 * 1024
#: the sign route (the slug as `views.public.SLUG` reads it) and the confirmation link
_SIGN_PATH = re.compile(r"/p/([a-z0-9][a-z0-9-]{0,79})/sign")
_CONFIRM_PATH = re.compile(r"/c/([A-Za-z0-9_.-]{1,200})")
#: the fields of the Confirm button's form
_BUTTON_FIELDS = frozenset({"csrf_token", "submit"})
_FORM = "application/x-www-form-urlencoded"

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Answered:
    """Which kept signer page answered a request, and the signer's own values in its holes."""

    key: tuple[str, str]
    holes: dict[str, str]


@dataclass(slots=True)
class LearnedAnswer:
    """Flask's answer with a kept signer page, with holes for the next signer's values."""

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
        self, holes: dict[str, str], limits: list[tuple[str, str]], date: str
    ) -> tuple[list[tuple[str, str]], bytes]:
        """Headers and body for a signer given these values."""
        body = self.page.fill(holes).encode()
        headers = self.headers.copy()
        if self.date_at >= 0:  # servers add their own Date; a WSGI app rarely sends one
            headers[self.date_at] = (headers[self.date_at][0], date)
        headers[self.length_at] = (headers[self.length_at][0], str(len(body)))
        headers[self.limits_at : self.limits_at] = limits
        return headers, body


class QuickSign:
    """WSGI middleware in front of Flask that takes ordinary signatures and confirmations."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.flask = app
        self.app = wsgi_app
        #: per kept page (`("check_email", slug)` or `("confirmed", slug)`), Flask's answer
        self.answers: dict[tuple[str, str], LearnedAnswer] = {}
        #: the sign route's per-address limit, charged outside Flask (`security.SharedLimitBudget`)
        self.budget: Any = None
        self.store: Callable[[], microcache.TimedStore | None] = lambda: None
        self._keys: tuple[Any, ...] = ()
        #: kept connections: for signatures (True) and for everything else (False)
        self._connections: dict[bool, KeptConnections] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method not in _SAFE_METHODS and "HTTP_REFERER" in environ:
            _drop_unreadable_referer(environ)
        if method != "POST" or self.budget is None:
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO", "")
        sign = _SIGN_PATH.fullmatch(path)
        confirm = None if sign else _CONFIRM_PATH.fullmatch(path)
        if sign is None and confirm is None:
            return self.app(environ, start_response)
        secret = self._csrf_secret(environ)
        body = _read_body(environ) if secret is not None else None
        if secret is None or body is None or environ.get("CONTENT_TYPE") != _FORM:
            return self._through_flask(environ, start_response)
        try:
            if sign is not None:
                quick = self._sign(sign.group(1), secret, environ, body)
            else:
                assert confirm is not None
                quick = self._confirm(confirm.group(1), secret, environ, body)
        except Exception:  # raised before any commit: Flask answers, as it would have
            log.exception("a request taken before Flask failed; Flask takes it")
            quick = None
        if quick is None:
            return self._through_flask(environ, start_response)
        start_response(quick[0], quick[1])
        return [quick[2]]

    def _answer(self, key: tuple[str, str]) -> LearnedAnswer | None:
        """The learned answer with the kept page `key`, while that page is kept."""
        answer = self.answers.get(key)
        store = self.store()
        if answer is None or store is None or answer.expires <= store.clock():
            return None
        return answer

    def _writes(self, *, for_signature: bool = False) -> KeptWrites:
        """Writes (or reads) on a kept connection: autocommit on PostgreSQL. On SQLite a
        signature's writes have a kept connection of their own whose transactions take the
        writer lock first, so that no option is switched on and off for each of them."""
        engine = self.flask.extensions["db_engine"]
        postgres = engine.dialect.name == "postgresql"
        key = for_signature and not postgres
        kept = self._connections.get(key)
        if kept is None or kept.engine is not engine:
            options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if postgres else {}
            if key:
                options["sqlite_immediate"] = True
            kept = self._connections[key] = KeptConnections(engine, **options)
        return KeptWrites(kept, autocommit=postgres)

    # -- checks -------------------------------------------------------------------------

    def _serializers(self) -> tuple[Prepared | None, Prepared, str]:
        """Flask's session signer, Flask-WTF's token signer and the CSRF field's name."""
        app = self.flask
        config = app.config
        keys = (
            app.secret_key,
            config.get("WTF_CSRF_SECRET_KEY"),
            config.get("SECRET_KEY_FALLBACKS"),
        )
        if self._keys[:1] != (keys,):
            self._keys = (keys, firstvisit.signers(app))
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
            # As Flask-WTF: the Referer must be this host, as Werkzeug reads the host.
            referrer = environ.get("HTTP_REFERER")
            if not referrer:
                return False
            try:
                server = (environ["SERVER_NAME"], int(environ["SERVER_PORT"]))
            except (KeyError, ValueError):
                server = None
            try:
                host = get_host(
                    "https", environ.get("HTTP_HOST"), server, config.get("TRUSTED_HOSTS")
                )
                if not host or not same_origin(referrer, f"https://{host}/"):
                    return False
            except (ValueError, SecurityError):
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

    def _fields(self, environ: dict[str, Any], secret: str, body: bytes) -> dict[str, str] | None:
        """The form's fields, once each, if its CSRF token is good."""
        try:
            # Escapes that are not UTF-8 are Flask's to read (Werkzeug keeps them as typed).
            pairs = parse_qsl(
                body.decode("ascii"),
                keep_blank_values=True,
                strict_parsing=bool(body),
                errors="strict",
            )
        except (UnicodeDecodeError, ValueError):
            return None
        fields = dict(pairs)
        if len(fields) != len(pairs) or not self._csrf_ok(
            environ, secret, fields.get("csrf_token")
        ):
            return None
        return fields

    def _sign(
        self, slug: str, secret: str, environ: dict[str, Any], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """Take the signature and build Flask's answer; None when Flask must judge it."""
        answer = self._answer(("check_email", slug))
        fields = self._fields(environ, secret, body) if answer is not None else None
        if answer is None or fields is None:
            return None
        cache = microcache.for_app(self.flask)
        store = cache.pages if cache is not None and cache.seconds else None
        if store is None:
            return None
        rules = signing.kept_rules(store, slug, lambda: self._rules(slug))
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
            # Counted now: should Flask still have to answer, it must not count it again.
            environ[LIMIT_CHARGED] = True
            _sessions, csrf, _field = self._serializers()
            token = csrf.dumps(secret)  # as Flask-WTF's generate_csrf makes it
            # On PostgreSQL a new signature is one statement (`signing.sign`), so it needs no
            # transaction of its own; an address that signed before gets one. On SQLite the
            # transaction takes the writer lock first.
            writes = self._writes(for_signature=True)
            try:
                handle = signing.sign(writes, rules, request, utcnow())
                writes.commit()
            except DomainError:
                return None
            finally:
                _close(writes)
        # Nothing after the commit can fail, so Flask never takes a signature a second time.
        holes = {"csrf_token": token, "handle": handle}
        return answer.status, *answer.build(holes, limits, microcache.http_date_now())

    def _rules(self, slug: str) -> signing.LetterRules | None:
        """The letter's signing rules, read on the kept connection outside any Flask request."""
        reads = self._writes()
        try:
            return signing.rules_for(reads, slug)
        finally:
            _close(reads)

    def _confirm(
        self, link: str, secret: str, environ: dict[str, Any], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """Confirm the signature behind the link and build Flask's answer; None when Flask
        must judge it."""
        fields = self._fields(environ, secret, body)
        if fields is None or not fields.keys() <= _BUTTON_FIELDS:
            return None
        engines = self.flask.extensions
        postgres = engines["db_engine"].dialect.name == "postgresql"
        with self.flask.app_context():
            # The read and the writes share one pooled connection. On SQLite the read is a
            # transaction of its own, ended before the writes, so the write lock waits for
            # it no longer than through Flask. On PostgreSQL the read is one statement
            # outside any transaction, and so are the writes unless the confirmation also
            # queues an email. The writes change nothing unless the signature is still
            # pending.
            reads = self._writes()
            now = utcnow()
            try:
                try:
                    found, letter = signing.pending_by_link(
                        reads, link, now, end_reads=not postgres
                    )
                except DomainError:
                    return None
                answer = self._answer(("confirmed", letter.slug))
                if answer is None:
                    return None
                writes = reads
                if not postgres:
                    # Its next transaction a writing one (the writer lock taken first).
                    writes = reads.writing_as(engines["db_write_engine"])
                elif found.updates_email:
                    reads.rollback()  # several statements: back to one transaction
                try:
                    result = signing.record_confirmation(writes, found, letter, now)
                    writes.commit()
                except DomainError:
                    return None
                finally:
                    _close(writes)
            finally:
                _close(reads)
        cache = microcache.for_app(self.flask)
        if cache is not None:  # as after every write through Flask
            cache.forget()
        holes = {"withdraw_url": result.withdraw_url, "withdraw_code": result.withdraw_code}
        return answer.status, *answer.build(holes, [], microcache.http_date_now())

    # -- learning -----------------------------------------------------------------------

    def _through_flask(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Let Flask answer; keep its answer as a template if it answered with a kept signer
        page and can be one."""
        sent: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            sent[:] = [status, headers]
            return start_response(status, headers, *exc_info)

        body_iter = self.app(environ, capture)
        answered: Answered | None = environ.get(ANSWERED)
        if answered is None or not sent or self._csrf_secret(environ) is None:
            return body_iter
        body = microcache.read_all(body_iter)
        answer = self._template(answered, environ, sent[0], sent[1], body)
        if answer is not None:
            self.answers[answered.key] = answer
        return [body]

    def _template(
        self,
        answered: Answered,
        environ: dict[str, Any],
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> LearnedAnswer | None:
        """A template for Flask's answer with this kept page, or None if it cannot be one."""
        store = self.store()
        page = store.get(answered.key) if store is not None else None
        expires = store.expiry(answered.key) if store is not None else None
        if page is None or expires is None or not status.startswith("200 "):
            return None
        names = [name.lower() for name, _ in headers]
        if "set-cookie" in names or names.count("content-length") != 1 or names.count("date") > 1:
            return None
        limited = answered.key[0] == "check_email" and self.budget.enabled
        limit_names = self.budget.header_names if limited else frozenset()
        at = [i for i, name in enumerate(names) if name in limit_names]
        if len(at) != len(limit_names) or (at and at != list(range(at[0], at[0] + len(at)))):
            return None
        limits = [headers[i] for i in at]
        static = [header for i, header in enumerate(headers) if i not in at]
        static_names = [name.lower() for name, _ in static]
        answer = LearnedAnswer(
            status=status,
            headers=static,
            page=page,
            expires=expires,
            date_at=static_names.index("date") if "date" in static_names else -1,
            length_at=static_names.index("content-length"),
            limits_at=at[0] if at else 0,
        )
        # Nothing of this signer's may stay in what the next signer is sent.
        own = [value for value in answered.holes.values() if value]
        if any(mine in text for mine in own for header in static for text in header):
            return None
        empty = page.fill(dict.fromkeys(answered.holes, ""))
        if any(mine in empty for mine in own):
            return None
        date = headers[names.index("date")][1] if "date" in names else ""
        rebuilt = answer.build(answered.holes, limits, date)
        return answer if rebuilt == (headers, body) else None


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _drop_unreadable_referer(environ: dict[str, Any]) -> None:
    """Flask-WTF's HTTPS check raises (a 500) on a Referer that is no URL at all, such as
    `https://[x/`. Without it the check refuses the form, as it refuses any foreign Referer."""
    try:
        urlsplit(environ["HTTP_REFERER"]).port  # noqa: B018 - parsing is the check
    except ValueError:
        del environ["HTTP_REFERER"]


def _close(writes: CoreWrites) -> None:
    """Give a connection back to the pool. After a commit nothing may send the request on
    to Flask, which would take it a second time, so a failure here is only logged."""
    try:
        writes.close()
    except Exception:
        log.exception("a connection could not be given back to the pool")


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
