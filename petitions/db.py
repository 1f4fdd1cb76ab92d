"""Database plumbing: the declarative base, the engine, and one session per request."""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Executable,
    Integer,
    MetaData,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine.interfaces import Compiled
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
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


#: WAL pages (4 KiB each) after which a commit copies them into the database itself: only a
#: safety net for when the mail worker is not running (see `restart_sqlite_log`)
SQLITE_AUTOCHECKPOINT_PAGES = 25_000
#: WAL pages past which the mail worker restarts the log between two writers
SQLITE_RESTART_PAGES = 2_000
#: how long a connection waits for a lock SQLite holds before it gives up
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when a transaction begins.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # The mail worker checkpoints and restarts the log several times a second; a commit
    # checkpoints only past this many WAL pages. A commit that checkpoints copies pages and
    # fsyncs twice while every other writer waits for it: with SQLite's default, 1,000, every
    # few dozenth commit did, which cost signing a third of its rate, and with 10,000 a
    # commit every half second still held the writer lock for about 30 ms.
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content (addresses of confirmed signers) is zeroed on disk.
    cursor.execute("PRAGMA secure_delete=ON")
    # Writers queue for the lock instead of failing with "database is locked".
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


log = logging.getLogger(__name__)


class WriterLockLog:
    """How long this process waited for and held SQLite's writer lock, for finding stalls.

    On when `UNDERSIGNED_WRITER_LOCK_LOG` gives a number of milliseconds: each hold longer
    than that is logged with the code that held it, and the process's totals are logged every
    1,000 holds and at exit. Off, it costs the lock one attribute test.
    """

    def __init__(self, threshold_ms: float) -> None:
        self.threshold = threshold_ms / 1000
        self.taken = 0
        self.waited = 0.0
        self.held = 0.0
        self.longest = 0.0

    def record(self, waited: float, held: float) -> None:
        """One hold of the lock: seconds spent waiting for it, then holding it."""
        self.taken += 1
        self.waited += waited
        self.held += held
        self.longest = max(self.longest, held)
        if held > self.threshold:
            # The callers outside the standard library and installed packages, innermost
            # first; the last three frames are this method, leave_queue and its caller here.
            code = [
                f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_stack()[:-3]
                if "/lib/python" not in frame.filename
            ]
            log.warning(
                "writer lock held %.1f ms by pid %d: %s",
                held * 1000,
                os.getpid(),
                " < ".join(reversed(code)) or "?",
            )
        if self.taken % 1000 == 0:
            self.totals()

    def totals(self) -> None:
        """Log this process's totals so far."""
        if self.taken:
            log.warning(
                "writer lock totals, pid %d: taken %d times, waited %.0f us and held %.0f us"
                " on average, longest hold %.1f ms",
                os.getpid(),
                self.taken,
                self.waited / self.taken * 1e6,
                self.held / self.taken * 1e6,
                self.longest * 1000,
            )


_LOCK_LOG_MS = os.environ.get("UNDERSIGNED_WRITER_LOCK_LOG")
#: set from UNDERSIGNED_WRITER_LOCK_LOG when the process starts; None when off
LOCK_LOG = WriterLockLog(float(_LOCK_LOG_MS)) if _LOCK_LOG_MS else None
if LOCK_LOG is not None:
    atexit.register(LOCK_LOG.totals)


class QueuedWriterConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on an OS file lock.

    SQLite's own wait for its write lock (busy_timeout) sleeps and retries: 1, 2, 5, 10 ms
    and up to 100 ms between tries. Under a rush of signatures from several gunicorn
    processes most of a writer's time went on those sleeps, long after the lock was free.
    Here a writer first takes an exclusive `flock` on a file beside the database; the kernel
    wakes the next waiter the moment a commit or rollback lets it go, so BEGIN IMMEDIATE finds
    SQLite's lock free. Connections that write without `sqlite_immediate` still use SQLite's
    own wait, which stays as the fallback.
    """

    writer_lock_path: str | None = None
    #: this connection's descriptor of the lock file, opened once
    _lock_fd: int | None = None
    #: the thread that holds the writer lock through this connection, or 0
    _holding = 0
    #: with `LOCK_LOG` on: when this connection began waiting for the lock, and got it
    _asked_at = _taken_at = 0.0

    def queue_for_writes(self) -> None:
        """Wait for this database's writer lock (held until commit, rollback or close)."""
        if self._holding or self.writer_lock_path is None:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.writer_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        owner = threading.get_ident()
        _held_here(self.writer_lock_path, +1, owner)
        if LOCK_LOG is not None:
            self._asked_at = time.perf_counter()
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except BaseException:
            _held_here(self.writer_lock_path, -1, owner)
            raise
        self._holding = owner
        if LOCK_LOG is not None:
            self._taken_at = time.perf_counter()

    def leave_queue(self) -> None:
        """Let the next writer go."""
        owner, self._holding = self._holding, 0
        if owner:
            assert self._lock_fd is not None and self.writer_lock_path is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            if LOCK_LOG is not None:
                now = time.perf_counter()
                LOCK_LOG.record(self._taken_at - self._asked_at, now - self._taken_at)
            # the thread that took it, whichever thread ends the transaction (pool clean-up)
            _held_here(self.writer_lock_path, -1, owner)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_queue()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


_WRITERS_HERE: dict[tuple[str, int], int] = {}
_WRITERS_LOCK = threading.Lock()


def _held_here(path: str, change: int, thread: int) -> None:
    """Count a thread's claims on a writer lock; a second claim from the thread that holds
    it would wait for itself forever, so it fails at once, as SQLite would after its timeout."""
    key = (path, thread)
    with _WRITERS_LOCK:
        held = _WRITERS_HERE.get(key, 0)
        if change > 0 and held:
            raise sqlite3.OperationalError(
                "database is locked (this thread already holds a write transaction)"
            )
        if held + change:
            _WRITERS_HERE[key] = held + change
        else:
            _WRITERS_HERE.pop(key, None)


def _sqlite_begin(conn: Any) -> None:
    # A transaction that will write takes the write lock up front (BEGIN IMMEDIATE), so
    # two writers never deadlock upgrading a read lock, which busy_timeout cannot fix.
    if conn.get_execution_options().get("sqlite_immediate"):
        dbapi_connection = conn.connection.dbapi_connection
        if isinstance(dbapi_connection, QueuedWriterConnection):
            try:
                dbapi_connection.queue_for_writes()
            except sqlite3.OperationalError as exc:
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        try:
            # Straight to the driver: this runs while holding the writer lock.
            dbapi_connection.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            if isinstance(dbapi_connection, QueuedWriterConnection):
                dbapi_connection.leave_queue()
            if isinstance(exc, sqlite3.OperationalError):
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            raise
    else:
        try:
            conn.connection.dbapi_connection.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            raise OperationalError("BEGIN", None, exc) from exc


def make_engine(url: str) -> Engine:
    """Build the engine for DATABASE_URL, with SQLite tuned for concurrent workers."""
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": 30},
            # Error messages must never carry signers' addresses into logs.
            "hide_parameters": True,
        }
        if url in {"sqlite://", "sqlite:///:memory:"}:
            kwargs["poolclass"] = StaticPool
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///").partition("?")[0])
            path.parent.mkdir(parents=True, exist_ok=True)
            # One writer lock per database file, shared by every process that opens it.
            queued = type(
                "QueuedWriters",
                (QueuedWriterConnection,),
                {"writer_lock_path": f"{path.resolve()}-writers"},
            )
            kwargs["connect_args"]["factory"] = queued
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, pool_size=5, max_overflow=5, hide_parameters=True)
    ping_idle_connections(engine, IDLE_PING_SECONDS)
    return engine


#: a pooled connection unused for longer than this is pinged before it is handed out
IDLE_PING_SECONDS = 10.0


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Check a pooled connection that sat unused for `idle_seconds` before handing it out.

    A connection the server closed (a restart, an idle timeout) is replaced, not handed to a
    request. SQLAlchemy's `pool_pre_ping` does this on every checkout, which costs each request
    a round trip; under load connections are never idle, so this costs nothing then.
    """

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in_at")
        if last is None or time.monotonic() - last < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (up to three tries).
            raise DisconnectionError("the server closed an idle connection") from exc

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checkout)


def init_app(app: Flask) -> None:
    """Create the engine and session factories and register the per-request teardown."""
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["db_engine"] = engine
    app.extensions["db_sessions"] = sessionmaker(engine, expire_on_commit=False)
    writer = app.extensions["db_write_engine"] = engine.execution_options(sqlite_immediate=True)
    app.extensions["db_write_sessions"] = sessionmaker(writer, expire_on_commit=False)
    app.teardown_appcontext(close_session)


def get_engine(app: Flask) -> Engine:
    """The application's engine."""
    return app.extensions["db_engine"]


def new_session(app: Flask, *, write: bool = True) -> Session:
    """A fresh session outside any request (CLI, worker, tests)."""
    key = "db_write_sessions" if write else "db_sessions"
    return app.extensions[key]()


class Writes(Protocol):
    """What the hot write paths need of a Session: its transaction's connection and a
    rollback. A bare `CoreWrites` has both without the ORM's bookkeeping."""

    def connection(self) -> Connection:
        """The connection of the current transaction, beginning one if needed."""

    def rollback(self) -> None:
        """Roll back the current transaction."""


class CoreWrites:
    """One write transaction on a pooled connection, for writes made outside Flask's
    request session (see `petitions.quicksign`).

    With `autocommit`, statements run on their own until a rollback, after which the
    connection is back in transactions: for a write that is one statement when all goes well
    (a signature on PostgreSQL), which then costs one round trip instead of three.
    """

    def __init__(self, engine: Engine, *, autocommit: bool = False) -> None:
        self._engine = engine
        self._autocommit = autocommit
        self._connection: Connection | None = None

    @property
    def autocommit(self) -> bool:
        """Whether statements run on their own (until a rollback)."""
        return self._autocommit

    def connection(self) -> Connection:
        """The connection, checked out of the pool on first use."""
        if self._connection is None:
            self._connection = self._engine.connect()
            if self._autocommit:
                self._connection.execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def writing_as(self, engine: Engine) -> CoreWrites:
        """These writes, their next transactions begun as `engine`'s are (on SQLite, with
        the writer lock taken): a read that has ended its transaction can then write on the
        connection it has, instead of checking out a second one."""
        self._engine = engine
        if self._connection is not None:
            self._connection.execution_options(**engine.get_execution_options())
        return self

    def rollback(self) -> None:
        """Roll back what was written; the next statement begins a transaction."""
        connection = self._connection
        if connection is not None:
            connection.rollback()
            if self._autocommit:
                self._autocommit = False
                level = connection.dialect.default_isolation_level
                connection.execution_options(isolation_level=level)

    def commit(self) -> None:
        """Commit what was written."""
        if self._connection is not None:
            self._connection.commit()

    def close(self) -> None:
        """Roll back anything uncommitted and return the connection to the pool."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class KeptConnections:
    """One connection of `engine`, kept checked out between requests.

    The writes taken before Flask (`petitions.quicksign`) are a few statements each, and
    checking a connection out of the pool and back in for every one of them (a SQLAlchemy
    Connection built and torn down, PostgreSQL's autocommit switched on and off again) cost
    more than the statements. The kept connection has `options` set once. One that sat
    unused for IDLE_PING_SECONDS is pinged before use, as pooled ones are. While it is in use
    (a threaded server, or a second writer in the same thread) or after it failed, `take`
    checks out a pooled connection, which the writes give back as usual; so a process holds
    at most one connection more than its pool lends. `Engine.dispose()` closes it too.
    """

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.engine = engine
        self.options = options
        self._kept: Connection | None = None
        self._busy = False
        #: the engine was disposed while the kept connection was in use: close it when back
        self._stale = False
        self._last_used = 0.0
        self._lock = threading.Lock()
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def take(self) -> tuple[Connection, bool]:
        """A connection with `options` set, and whether it is the kept one (to be given
        back with `give_back`, not closed)."""
        with self._lock:
            busy, self._busy = self._busy, True
            kept = self._kept
        if busy:
            return self._fresh(), False
        try:
            if kept is not None and not self._usable(kept):
                self._forget(kept)
                kept = None
            if kept is None:
                kept = self._kept = self._fresh()
        except BaseException:
            self._busy = False
            raise
        return kept, True

    def give_back(self, connection: Connection) -> None:
        """End what the kept connection still has open and set its options back; one that
        cannot be is closed, and the next `take` gets a new one."""
        try:
            if self._stale:
                self._forget(connection)
                return
            if connection.in_transaction():
                connection.rollback()
            reset = self._changed_options(connection)
            if reset:
                connection.execution_options(**reset)
        except Exception:
            self._forget(connection)
            raise
        finally:
            self._last_used = time.monotonic()
            self._stale = self._busy = False

    def close(self) -> None:
        """Close the kept connection (when it is given back, if it is in use now)."""
        with self._lock:
            if self._busy:
                self._stale = True
                return
            kept, self._kept = self._kept, None
        if kept is not None:
            self._forget(kept)

    def _fresh(self) -> Connection:
        connection = self.engine.connect()
        if self.options:
            connection.execution_options(**self.options)
        return connection

    def _usable(self, connection: Connection) -> bool:
        if connection.closed or connection.invalidated:
            return False
        if time.monotonic() - self._last_used < IDLE_PING_SECONDS:
            return True
        try:
            return bool(self.engine.dialect.do_ping(connection.connection.dbapi_connection))
        except Exception:
            return False

    def _forget(self, connection: Connection) -> None:
        """Close `connection` (given up on) and keep none until the next `take`."""
        if self._kept is connection:
            self._kept = None
        with contextlib.suppress(Exception):
            connection.invalidate()
        with contextlib.suppress(Exception):
            connection.close()

    def _changed_options(self, connection: Connection) -> dict[str, Any]:
        """What a use of the connection changed of the options `take` hands it out with
        (`writing_as`, and `CoreWrites.rollback` out of autocommit)."""
        now = connection.get_execution_options()
        want = {**self.engine.get_execution_options(), **self.options}
        reset: dict[str, Any] = {}
        if now.get("sqlite_immediate", False) != want.get("sqlite_immediate", False):
            reset["sqlite_immediate"] = want.get("sqlite_immediate", False)
        level = want.get("isolation_level", connection.dialect.default_isolation_level)
        if now.get("isolation_level", level) != level:
            reset["isolation_level"] = level
        return reset


class KeptWrites(CoreWrites):
    """`CoreWrites` on a process's kept connection (`KeptConnections`): nothing is checked
    out of the pool or given back to it per request. `autocommit` must say what the kept
    connection's options say."""

    def __init__(self, kept: KeptConnections, *, autocommit: bool = False) -> None:
        super().__init__(kept.engine, autocommit=autocommit)
        self._kept = kept
        self._is_kept = False

    def connection(self) -> Connection:
        """The kept connection (a pooled one if it is in use), taken on first use."""
        if self._connection is None:
            self._connection, self._is_kept = self._kept.take()
            if self._engine is not self._kept.engine:  # `writing_as` before the first use
                self._connection.execution_options(**self._engine.get_execution_options())
        return self._connection

    def close(self) -> None:
        """Roll back anything uncommitted; give the kept connection back for the next
        request (or a pooled one back to the pool)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._is_kept:
            self._kept.give_back(connection)
        else:
            connection.close()


def get_session(*, write: bool | None = None) -> Session:
    """The session of the current request, opened on first use.

    POST requests write, so on SQLite their transaction takes the write lock at once. A POST
    that reads before it writes asks for `write=False` for those reads: on SQLite a second
    session that never takes the lock, so the lock is held only while the writes run. Such a
    POST ends its reads (commit or rollback) before writing, since elsewhere it is one session.
    """
    if write is None:
        write = not has_request_context() or request.method not in {"GET", "HEAD", "OPTIONS"}
    # Only SQLite needs the second session: elsewhere reads never wait for writers, and one
    # connection saves a pool checkout (and its ping) per request.
    separate = current_app.extensions["db_engine"].dialect.name == "sqlite"
    key = "db_session" if write or not separate else "db_read_session"
    session = g.get(key)
    if session is None:
        session = new_session(current_app, write=write)
        setattr(g, key, session)
    return session


def end_reads() -> None:
    """End the request's read-only session's transaction, if it has one of its own (SQLite),
    so that its connection goes back to the pool before the writes take another."""
    session = g.get("db_read_session")
    if session is not None:
        session.rollback()


def close_session(_exc: BaseException | None = None) -> None:
    """Roll back anything uncommitted and return the connections to the pool."""
    for key in ("db_read_session", "db_session"):
        session = g.pop(key, None)
        if session is not None:
            session.close()


_COMPILED: dict[tuple[str, int], Compiled] = {}


def execute_compiled(connection: Connection, statement: Executable, params: dict[str, Any]) -> int:
    """Run a statement that SQLAlchemy cannot cache (its upserts), compiled once per dialect,
    on the driver's cursor in `connection`'s transaction; the number of rows it changed.

    Only for module-level statements whose parameters need no type processing (numbers and
    strings): the SQL string is reused and the values go to the driver as they are.
    """
    key = (connection.dialect.name, id(statement))
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = statement.compile(dialect=connection.dialect)  # type: ignore[attr-defined]
    arguments: Any = params
    if compiled.positiontup is not None:
        arguments = tuple(params[name] for name in compiled.positiontup)
    with _DriverCursor(connection, compiled.string, arguments) as cursor:
        return int(cursor.rowcount)


class _OnTheDriver:
    """A module-level statement compiled once per dialect and set of parameter names, kept
    with what running it on the driver's cursor needs (`_prepare`), or False when it must go
    through SQLAlchemy."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._prepared: dict[tuple[str, frozenset[str]], Any] = {}

    def _prepared_for(self, dialect: Any, params: dict[str, Any]) -> Any:
        key = (dialect.name, frozenset(params))
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = self._prepare(dialect, sorted(params))
        return prepared

    def _prepare(self, dialect: Any, names: list[str]) -> Any:
        raise NotImplementedError


class FastStatement(_OnTheDriver):
    """A module-level INSERT or UPDATE (or a SELECT over INSERTs in CTEs) that gives back at
    most one integer, compiled once per dialect and set of parameters and run straight on the
    driver's cursor. An UPDATE without RETURNING gives back the number of rows it matched.

    On the hot write paths SQLAlchemy's execution of a small INSERT cost several times what
    the database spent on it, and on SQLite that time is spent holding the write lock. The
    values still go through the columns' own bind processors (UTC timestamps and the like),
    and driver errors come back as SQLAlchemy's (an `IntegrityError` for a duplicate), with
    parameters hidden as everywhere else. Every column with a Python-side default must be
    given: a statement that would need one worked out goes through SQLAlchemy instead.
    """

    def __init__(self, statement: Any) -> None:
        super().__init__(statement)
        returned = getattr(statement, "_returning", None)
        if returned is None and hasattr(statement, "selected_columns"):
            returned = list(statement.selected_columns)
        self.returned = list(returned or ())
        self.counts_rows = bool(getattr(statement, "is_update", False))

    def __call__(self, connection: Connection, params: dict[str, Any]) -> Any:
        """Run the statement in `connection`'s transaction (begun if need be); the integer it
        gives back, or None."""
        prepared = self._prepared_for(connection.dialect, params)
        if prepared is False:
            result = connection.execute(self.statement, params)
            if self.returned:
                return result.scalar_one()
            return result.rowcount if self.counts_rows else None
        sql, binds = prepared
        with _DriverCursor(connection, sql, binds.arguments(params)) as cursor:
            if not self.returned:
                return cursor.rowcount if self.counts_rows else None
            row = cursor.fetchone()
        return None if row is None else row[0]

    def _prepare(self, dialect: Any, names: list[str]) -> Any:
        if getattr(self.statement, "is_insert", False):
            compiled = self.statement.compile(dialect=dialect, column_keys=names)
        else:
            compiled = self.statement.compile(dialect=dialect)
        needs_defaults = compiled.insert_prefetch or getattr(compiled, "postfetch", None)
        if needs_defaults or len(self.returned) > 1:
            return False
        if self.returned and not isinstance(self.returned[0].type, Integer):
            return False
        binds = _Binds.of(compiled, names)
        return False if binds is None else (compiled.string, binds)


class FastRow(_OnTheDriver):
    """A module-level SELECT that gives back at most one row, compiled once per dialect and
    run straight on the driver's cursor, in `connection`'s transaction (begun if need be).

    For the reads on the hot paths, where SQLAlchemy's execution cost more than the query.
    Values go in through the columns' bind processors and come back through their result
    processors (UTC timestamps and the like), as SQLAlchemy would give them; the row is a
    named tuple of the statement's column labels.
    """

    def __call__(self, connection: Connection, params: dict[str, Any]) -> Any:
        """The row, or None when there is none."""
        prepared = self._prepared_for(connection.dialect, params)
        if prepared is False:
            return connection.execute(self.statement, params).first()
        sql, binds, make_row, processors = prepared
        with _DriverCursor(connection, sql, binds.arguments(params)) as cursor:
            row = cursor.fetchone()
        if row is None:
            return None
        return make_row._make(
            value if process is None else process(value)
            for process, value in zip(processors, row, strict=True)
        )

    def _prepare(self, dialect: Any, names: list[str]) -> Any:
        compiled = self.statement.compile(dialect=dialect)
        binds = _Binds.of(compiled, names)
        if binds is None:
            return False
        columns = compiled._result_columns
        make_row = collections.namedtuple("Row", [column.keyname for column in columns])  # type: ignore[misc]
        processors = [column.type._cached_result_processor(dialect, None) for column in columns]
        return compiled.string, binds, make_row, processors


@dataclass(frozen=True)
class _Binds:
    """How a compiled statement's parameters reach the driver."""

    positions: tuple[str, ...] | None
    #: the bind processors of the parameters given at each call, as (name, processor) pairs
    processors: tuple[tuple[str, Any], ...]
    #: values written into the statement itself (`state == SignatureState.PENDING`), each
    #: processed once
    fixed: dict[str, Any]

    @classmethod
    def of(cls, compiled: Any, names: list[str]) -> _Binds | None:
        """The binds of `compiled` given `names`, or None when one needs SQLAlchemy."""
        processors = dict(compiled._bind_processors)
        fixed: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            if name in names:
                continue
            if bind.required or bind.callable is not None or bind.expanding:
                return None
            fixed[name] = processors[name](bind.value) if name in processors else bind.value
        if not set(names) <= set(compiled.binds):
            return None
        positions = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        given = tuple((name, processors[name]) for name in names if name in processors)
        return cls(positions, given, fixed)

    def arguments(self, params: dict[str, Any]) -> Any:
        """The driver's arguments for `params` (given with the names the binds were made
        for): a tuple, or a dict for named placeholders."""
        values = {**params, **self.fixed}
        for name, process in self.processors:
            values[name] = process(values[name])
        return tuple(values[name] for name in self.positions) if self.positions else values


#: where a PostgreSQL connection keeps its cursor for `_DriverCursor`, in the pool's record
_KEPT_CURSOR = "undersigned.cursor"


class _DriverCursor:
    """A driver cursor that has run `sql` in `connection`'s transaction (begun if need be);
    the driver's errors are raised as SQLAlchemy's, with the parameters hidden.

    On PostgreSQL one cursor is kept for the life of each pooled connection: psycopg's
    cursor learns how to send each Python type once, and a new cursor for every statement
    learned it again for each parameter (25 us of the sign statement's 41). psycopg reads
    every result in full, so a kept cursor holds nothing open between statements. SQLite's
    cursors are cheap, and one left mid-result would keep its statement running, so each
    statement there gets its own, closed on leaving the `with` block.

    A class rather than a generator made a context manager: a signature runs three of these,
    and contextlib's machinery cost more than the rest of the class's work.
    """

    __slots__ = ("cursor", "kept")

    def __init__(self, connection: Connection, sql: str, arguments: Any) -> None:
        dialect = connection.dialect
        if not connection.in_transaction():
            connection.begin()
        self.kept = kept = dialect.name == "postgresql"
        cursor = connection.info.get(_KEPT_CURSOR) if kept else None
        if (
            cursor is None
            or cursor.closed
            or cursor.connection is not connection.connection.driver_connection
        ):
            cursor = connection.connection.cursor()
            if kept:
                connection.info[_KEPT_CURSOR] = cursor
        self.cursor = cursor
        try:
            cursor.execute(sql, arguments)
        except dialect.loaded_dbapi.Error as exc:
            self.__exit__()
            raise DBAPIError.instance(
                sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
            ) from exc
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self) -> Any:
        return self.cursor

    def __exit__(self, *_exc: object) -> None:
        if not self.kept:
            self.cursor.close()


#: tables that grow with every signature; on PostgreSQL their planner statistics are kept
#: fresh by `refresh_statistics`
GROWING_TABLES = ("outbox", "signatures", "tokens")


def refresh_statistics(engine: Engine, tables: tuple[str, ...] = GROWING_TABLES) -> list[str]:
    """On PostgreSQL, ANALYZE each of `tables` that changed by more than autovacuum's default
    threshold (50 rows and 10 %) since its last analysis; the tables analyzed. Nothing
    elsewhere.

    PostgreSQL plans each backend's foreign-key checks once and keeps the plan while its
    statistics stand. On a new site whose first letter takes off, a token's check against a
    `signatures` table of a hundred rows is planned as a sequential scan, and every later
    token then reads the whole table, thousands of rows, until autovacuum analyzes it, which
    takes a minute or more. The same goes for the mail worker's own statements on `outbox`:
    psycopg prepares a statement run five times, and PostgreSQL then keeps a generic plan.
    A worker that polled an empty outbox for a while kept plans made for an empty table, and
    when a rush came, PostgreSQL spent 1.0 ms of CPU a signature instead of 0.4. The mail
    worker calls this every few seconds instead.
    """
    if engine.dialect.name != "postgresql":
        return []
    due = text(
        "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid"
        " WHERE s.relname IN :tables AND s.schemaname = current_schema()"
        " AND s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0)"
        " ORDER BY s.relname"
    ).bindparams(bindparam("tables", expanding=True))
    analyzed: list[str] = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for (name,) in connection.execute(due, {"tables": list(tables)}):
            connection.exec_driver_sql(f'ANALYZE "{name}"')
            analyzed.append(str(name))
    return analyzed


def restart_sqlite_log(engine: Engine, threshold: int = SQLITE_RESTART_PAGES) -> bool | None:
    """On SQLite, copy the log into the database and let the next writer start it afresh;
    whether it was restarted (None elsewhere).

    A log under steady writes is never wholly copied back (a writer always adds pages while a
    checkpoint runs), so it is never restarted and grows until a commit, holding the writer
    lock, checkpoints it. So the mail worker first copies what it can alongside the writers
    (PASSIVE), and once the log holds more than `threshold` pages it queues for the writer
    lock like any writer and copies the few pages added since, with no writer running. The
    log is then wholly in the database, and the next commit writes from its start. Readers
    still on the old log are waited for at most 10 ms, so the writers are never held up
    longer than that and the copy.
    """
    if engine.dialect.name != "sqlite":
        return None
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        _busy, logged, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if logged <= threshold or not isinstance(connection, QueuedWriterConnection):
            return False
        connection.queue_for_writes()
        try:
            connection.execute("PRAGMA busy_timeout=10")
            busy, logged, copied = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            connection.leave_queue()
        return not busy and logged == copied
    finally:
        raw.close()


def checkpoint_sqlite(engine: Engine, mode: str = "TRUNCATE") -> tuple[int, int, int] | None:
    """On SQLite, fold the write-ahead log into the database; None elsewhere.

    TRUNCATE (the default) also empties the -wal file: old page versions (a pending signer's
    address before confirmation wiped it) would otherwise linger there; with secure_delete the
    main file keeps none. PASSIVE copies what it can without waiting for anyone (the mail
    worker's frequent copies go through `restart_sqlite_log` instead).
    Returns SQLite's (busy, frames in the log, frames checkpointed).
    """
    if engine.dialect.name != "sqlite":
        return None
    if mode not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
        raise ValueError(f"no such checkpoint mode: {mode}")
    raw = engine.raw_connection()
    try:
        row = raw.driver_connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        raw.close()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None
