"""What the browser is told, rate limits, and the real client address behind proxies."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.constants import ConfigVars, HeaderNames
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.strategies import FixedWindowRateLimiter
from werkzeug.http import http_date
from werkzeug.middleware.proxy_fix import ProxyFix

from petitions import microcache, quicksign

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: the one page other sites may frame (the embeddable widget) sets its own policy
EMBEDDABLE_POLICY = CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", "frame-ancestors *")
#: what every answer carries unless its view set the header itself
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
STRICT_TRANSPORT_SECURITY = "max-age=63072000; includeSubDomains"

limiter = Limiter(key_func=get_remote_address, headers_enabled=True)

# Limits per client address. Codes also die after CODE_MAX_ATTEMPTS wrong tries each.
SIGN_LIMIT = "10 per minute; 60 per hour"
RESEND_LIMIT = "5 per minute; 30 per hour"
CODE_LIMIT = "20 per minute; 100 per hour"
LOGIN_LIMIT = "10 per minute; 50 per hour"
REGISTER_LIMIT = "5 per minute; 20 per hour"
RESET_LIMIT = "5 per minute; 20 per hour"
API_LIMIT = "300 per minute"
REPORT_LIMIT = "5 per minute; 20 per hour"


def init_security(app: Flask) -> None:
    """The read micro-cache, ProxyFix (when TRUSTED_PROXIES > 0) in front of it, the rate
    limiter, the security headers, and session cookies signed without rebuilding the signer."""
    quick = quicksign.install(app)
    microcache.install(app)
    proxies = int(app.config.get("TRUSTED_PROXIES", 0))
    if proxies > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    counts = [len(hook_list) for hook_list in _hook_lists(app)]
    limiter.init_app(app)
    added = [hooks[count:] for hooks, count in zip(_hook_lists(app), counts, strict=True)]
    _only_where_limited(app, added)
    quick.budget = SharedLimitBudget(app, SIGN_LIMIT, "public.sign")
    limiter.request_filter(_counted_before_flask)
    app.after_request(_security_headers)
    app.session_interface = SessionCookies()


def _counted_before_flask() -> bool:
    """A signature QuickSign counted against the sign limit, then handed to Flask (a database
    error, a race), is not counted twice."""
    return bool(request.environ.get(quicksign.LIMIT_CHARGED))


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signer built once per set of keys rather
    than twice per request."""

    def __init__(self) -> None:
        self._signer: tuple[Any, Any] = (None, None)

    def get_signing_serializer(self, app: Flask) -> Any:
        """The serializer Flask would build, reused while SECRET_KEY and its fallbacks stay."""
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if self._signer[0] != keys:
            self._signer = (keys, super().get_signing_serializer(app))
        return self._signer[1]


_LIMITED_ENDPOINTS = "undersigned.limited_endpoints"


def limits_apply() -> bool:
    """Whether any rate limit applies to the current request's endpoint.

    Asked of Flask-Limiter once per endpoint when limits are fixed at start-up (see
    `_only_where_limited`); otherwise always True.
    """
    limited = current_app.extensions.get(_LIMITED_ENDPOINTS)
    if limited is None:
        return True
    endpoint = request.endpoint
    found = limited.get(endpoint)
    if found is None:
        defaults, decorated = limiter.limit_manager.resolve_limits(
            current_app, endpoint, request.blueprint, in_middleware=False
        )
        found = limited[endpoint] = bool(endpoint) and bool(defaults or decorated)
    return found


def _hook_lists(app: Flask) -> list[list[Callable[..., Any]]]:
    return [
        app.before_request_funcs.setdefault(None, []),
        app.after_request_funcs.setdefault(None, []),
        app.teardown_request_funcs.setdefault(None, []),
    ]


def _only_where_limited(app: Flask, added: list[list[Callable[..., Any]]]) -> None:
    """Run Flask-Limiter's per-request hooks only on endpoints that some limit applies to.

    Its before, after and teardown hooks work out on every request which limits apply:
    about 60 µs, more than Flask's own work for a small page. Here every limit is fixed at
    start-up, per route (`@limiter.limit`) or per blueprint (the API), with no default,
    application or meta limits, so the answer for an endpoint never changes: Flask-Limiter
    is asked once per endpoint, and requests to endpoints without a limit skip the hooks.
    The limits themselves are checked exactly as before where they apply.
    """
    if any(
        app.config.get(name)
        for name in (
            ConfigVars.DEFAULT_LIMITS,
            ConfigVars.APPLICATION_LIMITS,
            ConfigVars.META_LIMITS,
        )
    ):
        return
    app.extensions[_LIMITED_ENDPOINTS] = {}
    applies = limits_apply

    def before(hook: Callable[..., Any]) -> Callable[..., Any]:
        return lambda: hook() if applies() else None

    def after(hook: Callable[..., Any]) -> Callable[..., Any]:
        return lambda response: hook(response) if applies() else response

    def teardown(hook: Callable[..., Any]) -> Callable[..., Any]:
        return lambda error=None: hook(error) if applies() else None

    for hook_list, new_hooks, wrap in zip(
        _hook_lists(app), added, (before, after, teardown), strict=True
    ):
        for hook in new_hooks:
            hook_list[hook_list.index(hook)] = wrap(hook)


def limit_blueprint(app: Flask, name: str, limit: str) -> None:
    """Put one limit, shared by all its routes, on every route of a blueprint (the API).

    Answers the micro-cache replays for the blueprint are charged to the same budget.
    """
    blueprint = app.blueprints.get(name)
    if blueprint is None:
        return
    limiter.shared_limit(limit, scope=name)(blueprint)
    cache = microcache.for_app(app)
    if cache is not None:
        cache.budgets[name] = SharedLimitBudget(app, limit, name)


class SharedLimitBudget:
    """A blueprint's shared per-address limit, charged outside Flask for replayed answers.

    It hits the very counter Flask-Limiter hits for the blueprint's routes (the key is the
    key prefix, the client address and the scope, as Flask-Limiter builds it), through the
    limiter's own strategy and storage, and returns the headers Flask-Limiter would add.
    """

    def __init__(self, app: Flask, limit: str, scope: str) -> None:
        config = app.config
        self.enabled = bool(config.get(ConfigVars.ENABLED, True))
        self.items = sorted(parse_many(limit))
        prefix = config.get(ConfigVars.KEY_PREFIX, "")
        self.prefix = [prefix] if prefix else []
        self.scope = scope
        self.http_date = config.get(ConfigVars.HEADER_RETRY_AFTER_VALUE) == "http-date"
        self.names = [
            config.get(variable, header.value)
            for variable, header in (
                (ConfigVars.HEADER_LIMIT, HeaderNames.LIMIT),
                (ConfigVars.HEADER_REMAINING, HeaderNames.REMAINING),
                (ConfigVars.HEADER_RESET, HeaderNames.RESET),
                (ConfigVars.HEADER_RETRY_AFTER, HeaderNames.RETRY_AFTER),
            )
        ]
        self.header_names = frozenset(name.lower() for name in self.names)

    def charge(self, environ: dict[str, Any]) -> list[tuple[str, str]] | None:
        """Count one request from the environ's client; its headers, or None when over."""
        if not self.enabled:
            return []
        # get_remote_address, read from the environ that ProxyFix has already corrected
        args = [*self.prefix, environ.get("REMOTE_ADDR") or "127.0.0.1", self.scope]
        strategy = limiter.limiter
        if type(strategy) is FixedWindowRateLimiter:
            found = self._charge_fixed_windows(strategy.storage, args)
            if found is None:
                return None
            reset, remaining = found
        else:
            # Tested before any is hit: a request over a limit goes to Flask, which hits again.
            if not all(strategy.test(item, *args) for item in self.items):
                return None
            for item in self.items:
                if not strategy.hit(item, *args):
                    return None
            reset, remaining = strategy.get_window_stats(self.items[0], *args)
        shown = self.items[0]
        reset_at = int(reset + 1)
        retry = http_date(reset_at) if self.http_date else str(int(reset_at - time.time()))
        limit_name, remaining_name, reset_name, retry_name = self.names
        return [
            (limit_name, str(shown.amount)),
            (remaining_name, str(remaining)),
            (reset_name, str(reset_at)),
            (retry_name, retry),
        ]

    def _charge_fixed_windows(self, storage: Any, args: list[str]) -> tuple[float, int] | None:
        """What the fixed-window strategy's `test`, `hit` and `get_window_stats` do, in that
        order, with each limit's key built once instead of once a call; (reset, remaining)
        of the first limit, or None when a limit is spent."""
        keys = [item.key_for(*args) for item in self.items]
        if not all(
            storage.get(key) < item.amount for item, key in zip(self.items, keys, strict=True)
        ):
            return None
        for item, key in zip(self.items, keys, strict=True):
            if storage.incr(key, item.get_expiry(), amount=1) > item.amount:
                return None
        shown, key = self.items[0], keys[0]
        remaining = max(0, shown.amount - storage.get(key))
        return storage.get_expiry(key), remaining


def _security_headers(response: Response) -> Response:
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    for name, value in SECURITY_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    if "x-frame-options" not in present and "frame-ancestors 'none'" in headers.get(
        "Content-Security-Policy", ""
    ):
        headers.add("X-Frame-Options", "DENY")
    if "strict-transport-security" not in present and request.is_secure:
        headers.add("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
    return response
