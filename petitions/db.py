"""Database plumbing: the declarative base, the engine, and one session per request."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
#: seconds a statement waits for a lock before the request gives up with "busy, try again"
LOCK_TIMEOUT_SECONDS = 5
#: seconds any one statement may run on PostgreSQL (well under gunicorn's 30 s timeout)
STATEMENT_TIMEOUT_SECONDS = 15


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite keeps no zone; PostgreSQL does. This keeps both the same for Python.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base class of every model; constraint names are stable for migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when a transaction begins.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content (addresses of confirmed signers) is zeroed on disk.
    cursor.execute("PRAGMA secure_delete=ON")
    # Writers wait this long for the lock, then the request answers "busy, try again".
    cursor.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_SECONDS * 1000}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A transaction that will write takes the write lock up front (BEGIN IMMEDIATE), so two
    # writers never deadlock upgrading a read lock, which busy_timeout cannot resolve.
    immediate = connection.get_execution_options().get("sqlite_immediate")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    """Build the engine for DATABASE_URL: SQLite in WAL mode, or a pinged PostgreSQL pool."""
    # Error messages must never carry signers' addresses into logs.
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if url in {"sqlite://", "sqlite:///:memory:"}:
            kwargs["poolclass"] = StaticPool
        elif url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///").partition("?")[0]).parent.mkdir(
                parents=True, exist_ok=True
            )
        engine = create_engine(url, hide_parameters=True, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    timeouts = (
        f"-c lock_timeout={LOCK_TIMEOUT_SECONDS * 1000}"
        f" -c statement_timeout={STATEMENT_TIMEOUT_SECONDS * 1000}"
    )
    return create_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,  # a connection the server closed is replaced before use
        hide_parameters=True,
        # A server that does not answer at all is given up on as soon as a lock would be.
        connect_args={"options": timeouts, "connect_timeout": LOCK_TIMEOUT_SECONDS},
    )


def init_app(app: Flask) -> None:
    """Create the engine and session factories and register the per-request teardown."""
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["db_engine"] = engine
    app.extensions["db_reads"] = sessionmaker(engine, expire_on_commit=False)
    writer = engine.execution_options(sqlite_immediate=True)
    app.extensions["db_writes"] = sessionmaker(writer, expire_on_commit=False)
    app.teardown_appcontext(close_session)


def get_engine(app: Flask) -> Engine:
    """The application's engine."""
    return app.extensions["db_engine"]


def new_session(app: Flask, *, write: bool = True) -> Session:
    """A fresh session outside any request (CLI, worker, tests)."""
    return app.extensions["db_writes" if write else "db_reads"]()


def get_session() -> Session:
    """The session of the current request, opened on first use; POSTs take the write lock."""
    session = g.get("db_session")
    if session is None:
        write = not has_request_context() or request.method not in {"GET", "HEAD", "OPTIONS"}
        session = g.db_session = new_session(current_app, write=write)
    return session


def close_session(_exc: BaseException | None = None) -> None:
    """Roll back anything uncommitted and return the connection to the pool.

    A connection the server has ended has nothing left to roll back: SQLAlchemy invalidates it
    and hands it back to the pool, which replaces it, so the request's answer stands.
    """
    session = g.pop("db_session", None)
    if session is None:
        return
    try:
        session.close()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise


def checkpoint_sqlite(engine: Engine) -> tuple[int, int, int] | None:
    """On SQLite, fold the write-ahead log into the database and empty it; None elsewhere.

    Old page versions (a pending signer's address before confirmation wiped it) would
    otherwise linger in the -wal file. Returns SQLite's (busy, log frames, frames copied).
    """
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as connection:
        row = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    return (int(row[0]), int(row[1]), int(row[2]))
