"""subscribers: personal addresses for updates move to a sealed store of their own

Revision ID: 0007_subscribers
Revises: 0006_committee
Create Date: 2026-12-04 23:00:00.000000

Each `signatures.updates_email` in clear becomes, for a confirmed signature, a `subscribers`
row (random id, sealed address, keyed hash, today's date, in random order) and, for a pending
one, `signatures.updates_sealed`, moved by the worker once it is confirmed. The column goes.
`signatures.details_at` binds a pending signature's details to the token issued with them.
Moving addresses needs UPDATES_KEY, so run it as `flask --app wsgi db upgrade`.
"""

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from flask import has_app_context

revision = '0007_subscribers'
down_revision = '0006_committee'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'subscribers',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('petition_id', sa.Integer(), nullable=False),
        sa.Column('address_hash', sa.String(length=64), nullable=False),
        sa.Column('address_sealed', sa.LargeBinary(), nullable=False),
        sa.Column('created_on', sa.Date(), nullable=False),
        sa.Column('confirmed_on', sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ['petition_id'],
            ['petitions.id'],
            name=op.f('fk_subscribers_petition_id_petitions'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_subscribers')),
        sa.UniqueConstraint('address_hash', name=op.f('uq_subscribers_address_hash')),
    )
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_subscribers_petition_id'), ['petition_id'], unique=False
        )
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updates_sealed', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('withdrawal_sealed', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('details_at', sa.DateTime(timezone=True), nullable=True))
    _move_addresses()
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.drop_column('updates_email')


def _move_addresses() -> None:
    """Seal today's clear addresses: confirmed ones into the store, pending ones in place."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, petition_id, state, updates_email FROM signatures"
            " WHERE updates_email IS NOT NULL"
        )
    ).all()
    if not rows:
        return
    if not has_app_context():
        raise RuntimeError(
            "moving personal addresses needs UPDATES_KEY: run `flask --app wsgi db upgrade`"
        )
    from petitions.signing import subscribers

    day = datetime.now(UTC).date()  # the day of the move, the same for every row
    confirmed = [row for row in rows if row.state == 'confirmed']
    for row in secrets.SystemRandom().sample(confirmed, len(confirmed)):
        row_id = secrets.token_hex(16)
        bind.execute(
            sa.text(
                "INSERT INTO subscribers (id, petition_id, address_hash, address_sealed,"
                " created_on) VALUES (:id, :petition, :hash, :sealed, :day)"
                " ON CONFLICT (address_hash) DO NOTHING"
            ),
            {
                "id": row_id,
                "petition": row.petition_id,
                "hash": subscribers.subscriber_hash(row.petition_id, row.updates_email),
                "sealed": subscribers.seal(
                    row.updates_email, f"subscriber:{row_id}:{row.petition_id}"
                ),
                "day": day,
            },
        )
    for row in rows:
        if row.state != 'confirmed':
            bind.execute(
                sa.text("UPDATE signatures SET updates_sealed = :sealed WHERE id = :id"),
                {
                    "id": row.id,
                    "sealed": subscribers.seal_for_signature(row.petition_id, row.updates_email),
                },
            )
    bind.execute(sa.text("UPDATE signatures SET updates_email = NULL"))


def downgrade() -> None:
    # Subscribers cannot be put back on signatures: nothing says which signature each came
    # from, by design. The store is dropped; addresses still waiting on a pending signature
    # stay sealed, lost with the column.
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updates_email', sa.String(length=254), nullable=True))
        batch_op.drop_column('details_at')
        batch_op.drop_column('withdrawal_sealed')
        batch_op.drop_column('updates_sealed')
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscribers_petition_id'))
    op.drop_table('subscribers')
