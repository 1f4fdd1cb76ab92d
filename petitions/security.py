"""What the browser is told, rate limits, and the real client address behind proxies."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

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
    """ProxyFix (when TRUSTED_PROXIES > 0), the rate limiter, and the security headers."""
    proxies = int(app.config.get("TRUSTED_PROXIES", 0))
    if proxies > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    limiter.init_app(app)
    app.after_request(_security_headers)


def limit_blueprint(app: Flask, name: str, limit: str) -> None:
    """Put one limit, shared by all its routes, on every route of a blueprint (the API)."""
    blueprint = app.blueprints.get(name)
    if blueprint is not None:
        limiter.shared_limit(limit, scope=name)(blueprint)


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
