"""Error pages in the site's look, and JSON errors under /api/."""

from __future__ import annotations

import logging

from flask import Flask, current_app, has_request_context, jsonify, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

from petitions.db import close_session

log = logging.getLogger(__name__)

#: seconds a client is asked to wait before trying again when the database is busy or away
RETRY_AFTER_SECONDS = 5

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
    503: (
        "Busy, please try again",
        "The site could not reach its database just now, and nothing you sent was half-saved."
        " Please try again in a few seconds.",
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
    # Rendered without Flask's context processors: Flask-Login's loads the visitor from the
    # database, and this page must show while the database is down.
    page = current_app.jinja_env.get_template("error.html")
    return page.render(status=status, title=title, message=message), status


def refuse_undecodable_address() -> None:
    """400 on every route for a path or query string that is not UTF-8.

    Werkzeug decodes the query string strictly (`request.args` raises UnicodeDecodeError) and
    the path leniently (bad bytes become U+FFFD); either way nothing in it can be trusted.
    """
    try:
        request.args  # noqa: B018 - parsing it is the check
    except UnicodeDecodeError:
        raise BadRequest() from None
    if "\ufffd" in request.path:
        raise BadRequest()


def _rule_for_path(record: logging.LogRecord) -> bool:
    """Flask logs an error that escaped every handler as "Exception on <path>"; the path may
    be a token link, so the route's rule (`/c/<token>`) is written instead."""
    if has_request_context() and isinstance(record.msg, str):
        rule = request.url_rule.rule if request.url_rule else "(no route)"
        record.msg = record.msg.replace(request.path, rule)
    return True


def register_error_handlers(app: Flask) -> None:
    """Turn HTTP errors, CSRF failures, database outages and crashes into the site's pages."""
    app.before_request(refuse_undecodable_address)
    app.logger.addFilter(_rule_for_path)

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

    @app.errorhandler(DBAPIError)
    def database_unavailable(error: DBAPIError):  # type: ignore[no-untyped-def]
        """The database went away, timed out or is locked: 503, try again shortly.

        PEP 249's OperationalError is the database failing to operate (a lost connection, a
        lock or statement timeout, SQLite's "database is locked"), not a mistake of ours.
        """
        if not (isinstance(error, OperationalError) or error.connection_invalidated):
            return crash(error)
        close_session()  # roll back what the request began, before the page is rendered
        log.warning(
            "database unavailable (%s) on %s %s",
            type(error.orig).__name__,
            request.method,
            request.endpoint,
        )
        body, status = render_error(503)
        return body, status, {"Retry-After": str(RETRY_AFTER_SECONDS)}

    @app.errorhandler(Exception)
    def crash(error: Exception):  # type: ignore[no-untyped-def]
        """An unexpected failure: log the type only (no request data), show a calm page."""
        if isinstance(error, HTTPException):
            return http_error(error)
        log.exception(
            "unhandled %s on %s %s", type(error).__name__, request.method, request.endpoint
        )
        return render_error(InternalServerError.code)
