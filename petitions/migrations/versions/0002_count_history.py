"""count history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:27:49.288053
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# History rows are only ever added: the database refuses to change or delete one, so a
# letter with a recorded history cannot be deleted either (it can be hidden). The SQLite
# triggers name no other table, so batch migrations that rebuild other tables still work;
# a batch migration that rebuilds count_snapshots itself must create them again.
PG_FUNCTION = """
CREATE FUNCTION count_snapshots_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'count history is append-only';
END $$
"""


def upgrade() -> None:
    op.create_table('count_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('petition_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=True),
    sa.Column('milestone', sa.BigInteger(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('supporters', sa.BigInteger(), nullable=False),
    sa.Column('employees', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['petition_id'], ['petitions.id'], name=op.f('fk_count_snapshots_petition_id_petitions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_count_snapshots')),
    sa.UniqueConstraint('petition_id', 'hour', name=op.f('uq_count_snapshots_petition_id_hour')),
    sa.UniqueConstraint('petition_id', 'milestone', name=op.f('uq_count_snapshots_petition_id_milestone'))
    )
    with op.batch_alter_table('count_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_count_snapshots_feed', ['kind', 'recorded_at'], unique=False)
        batch_op.create_index('ix_count_snapshots_history', ['petition_id', 'recorded_at'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER count_snapshots_append_only BEFORE UPDATE OR DELETE ON count_snapshots"
            " FOR EACH ROW EXECUTE FUNCTION count_snapshots_append_only()"
        )
    else:
        op.execute(
            "CREATE TRIGGER count_snapshots_no_update BEFORE UPDATE ON count_snapshots"
            " BEGIN SELECT RAISE(ABORT, 'count history is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER count_snapshots_no_delete BEFORE DELETE ON count_snapshots"
            " BEGIN SELECT RAISE(ABORT, 'count history is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER count_snapshots_append_only ON count_snapshots")
        op.execute("DROP FUNCTION count_snapshots_append_only()")
    else:
        op.execute("DROP TRIGGER count_snapshots_no_update")
        op.execute("DROP TRIGGER count_snapshots_no_delete")
    with op.batch_alter_table('count_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_count_snapshots_history')
        batch_op.drop_index('ix_count_snapshots_feed')

    op.drop_table('count_snapshots')
