"""Health checks: /healthz for uptime monitors, /readyz for load balancers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from petitions.db import get_engine
from petitions.errors import RETRY_AFTER_SECONDS

bp = Blueprint("health", __name__)


def database_answers() -> bool:
    """Whether the database answers `SELECT 1` now.

    Asked many times a minute, so it takes a pooled connection rather than the request's ORM
    session; PostgreSQL's connect and statement timeouts bound how long it can take.
    """
    try:
        with get_engine(current_app).connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError:
        return False
    return True


def _never_stored(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """200 while this process answers, saying whether the database does too."""
    database = "ok" if database_answers() else "unavailable"
    return _never_stored(jsonify(status="ok", database=database))


@bp.get("/readyz")
def readyz() -> Response:
    """200 when this server can serve; 503 while its database is unreachable, so a load
    balancer sends requests to another server meanwhile."""
    if not database_answers():
        response = jsonify(status="unavailable", database="unavailable")
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return _never_stored(response)
    return _never_stored(jsonify(status="ok", database="ok"))
