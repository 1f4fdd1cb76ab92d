"""Error pages in the site's look, and JSON errors under /api/."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

MESSAGES = {
    400: (
        "Something in that request was not right",
        "Please go back, reload the page and try again.",
    ),
    403: ("Not allowed", "You do not have access to this page."),
    404: (
        "Page not found",
        "There is nothing here. The address may be mistyped, or the page was removed.",
    ),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too much", "What you sent is larger than this site accepts."),
    429: ("Slow down", "There have been too many attempts. Please wait a little and try again."),
    500: (
        "Something went wrong",
        "It is our fault, and nothing you sent was half-saved. Please try again.",
    ),
}


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def render_error(status: int, title: str | None = None, message: str | None = None):  # type: ignore[no-untyped-def]
    """Render an error as a page (or JSON under /api/) with the given status."""
    default_title, default_message = MESSAGES.get(status, MESSAGES[500])
    title, message = title or default_title, message or default_message
    if _wants_json():
        return jsonify(error={"status": status, "title": title, "message": message}), status
    return render_template("error.html", status=status, title=title, message=message), status


def register_error_handlers(app: Flask) -> None:
    """Turn every HTTP error, CSRF failure and crash into a page in the site's look."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):  # type: ignore[no-untyped-def]
        """A POST without a valid CSRF token: nothing was changed."""
        return render_error(
            400,
            "This form has expired",
            "For your safety the form was not accepted. Please reload the page and send it again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        """Any 4xx/5xx raised by Flask or Werkzeug."""
        body, status = render_error(error.code or 500)
        headers = {}
        valid_methods = getattr(error, "valid_methods", None)
        if valid_methods:
            headers["Allow"] = ", ".join(valid_methods)
        return body, status, headers

    @app.errorhandler(Exception)
    def crash(error: Exception):  # type: ignore[no-untyped-def]
        """An unexpected failure: log the type only (no request data), show a calm page."""
        if isinstance(error, HTTPException):
            return http_error(error)
        log.exception(
            "unhandled %s on %s %s", type(error).__name__, request.method, request.endpoint
        )
        return render_error(InternalServerError.code)
