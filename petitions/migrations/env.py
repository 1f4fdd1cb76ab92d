"""Alembic environment: runs migrations on the app's engine (see petitions.cli)."""

from alembic import context

import petitions.models  # noqa: F401  (registers every table on Base.metadata)
from petitions.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by dropping it, and with foreign keys on SQLite deletes
        # every row that refers to the dropped table. The pragma works only outside a
        # transaction, so it goes to the driver's connection before Alembic begins one.
        connection.connection.execute("PRAGMA foreign_keys=OFF")
    else:
        # The app's statement timeout guards requests; a migration may take as long as it needs.
        connection.exec_driver_sql("SET statement_timeout = 0")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        connection.connection.execute("PRAGMA foreign_keys=ON")
