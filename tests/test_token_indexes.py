"""The indexes on tokens: each lookup still finds its tokens by index, the account's through a
partial index that leaves out every signer's token."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select, text

from petitions import tokens
from petitions.db import get_engine, new_session, utcnow
from petitions.models import Token, TokenPurpose, User


def _plan(app, sql: str, params) -> str:
    """The database's plan for `sql`, as text, with sequential scans discouraged on
    PostgreSQL (a table of a few rows is otherwise read whole, index or not)."""
    engine = get_engine(app)
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            rows = connection.exec_driver_sql(f"EXPLAIN {sql}", params).all()
            return "\n".join(row[0] for row in rows)
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
        return "\n".join(str(row[-1]) for row in rows)


def _statements_of(app, call):
    """The SQL and parameters of every statement `call` runs."""
    seen = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        seen.append((statement, parameters))

    engine = get_engine(app)
    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_a_withdrawal_code_is_found_through_the_code_index(app):
    now = utcnow()
    with app.app_context(), new_session(app) as session:
        issued = tokens.issue(session, TokenPurpose.WITHDRAW_SIGNATURE, now, long_code=True)
        session.commit()
        code = issued.code

    def find():
        with app.app_context(), new_session(app) as session:
            found = tokens.find_by_long_code(session, TokenPurpose.WITHDRAW_SIGNATURE, code)
            assert found is not None and found.handle == issued.handle

    (sql, params), *_ = [s for s in _statements_of(app, find) if "code_hash =" in s[0]]
    assert "ix_tokens_code_hash" in _plan(app, sql.replace(" FOR UPDATE", ""), params)


def test_other_purposes_take_no_standalone_code(app):
    with app.app_context(), new_session(app) as session:
        with pytest.raises(ValueError, match="standalone"):
            tokens.issue(session, TokenPurpose.CONFIRM_ACCOUNT, utcnow(), long_code=True)
        assert (
            tokens.find_by_long_code(session, TokenPurpose.CONFIRM_ACCOUNT, "ABCD-EFGH-JKLM-NPQR")
            is None
        )


def test_an_accounts_tokens_are_found_through_the_account_index_and_go_with_it(app):
    now = utcnow()
    with app.app_context(), new_session(app) as session:
        user = User(
            email="organizer@example.org",
            display_name="Org",
            password_hash="x",
            created_at=now,
        )
        session.add(user)
        session.flush()
        tokens.issue(session, TokenPurpose.RESET_PASSWORD, now, user_id=user.id, max_age=3600)
        # A signer's token holds no account and sits in no account index.
        tokens.issue(session, TokenPurpose.CONFIRM_SIGNATURE, now)
        session.commit()
        user_id = user.id

    plan = _plan(
        app,
        "SELECT id FROM tokens WHERE user_id = " + ("%(u)s" if _pg(app) else ":u"),
        {"u": user_id},
    )
    assert "ix_tokens_user_id" in plan

    # The foreign key still removes an account's tokens with the account.
    with app.app_context(), new_session(app) as session:
        session.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})
        session.commit()
        left = session.scalars(select(Token.purpose)).all()
    assert left == [TokenPurpose.CONFIRM_SIGNATURE]


def _pg(app) -> bool:
    return get_engine(app).dialect.name == "postgresql"
