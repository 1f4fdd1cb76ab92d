"""Health check for load balancers and uptime monitors."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from petitions.db import get_engine

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """200 when the database answers, 503 when it does not.

    Asked many times a minute, so it takes a pooled connection for one `SELECT 1` rather
    than opening the request's ORM session.
    """
    try:
        with get_engine(current_app).connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError:
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")
