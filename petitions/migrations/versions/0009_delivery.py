"""delivery: targets, deliveries with their packs and recipient links, responses, and the
append-only public timeline

Revision ID: 0009_delivery
Revises: 0008_proofs
Create Date: 2026-12-04 23:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0009_delivery'
down_revision = '0008_proofs'
branch_labels = None
depends_on = None

_GUARD = "the timeline is append-only"


def upgrade() -> None:
    op.create_table('delivery_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('petition_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=120), nullable=False),
    sa.Column('organisation', sa.String(length=120), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['petition_id'], ['petitions.id'], name=op.f('fk_delivery_targets_petition_id_petitions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_targets'))
    )
    op.create_index(op.f('ix_delivery_targets_petition_id'), 'delivery_targets', ['petition_id'], unique=False)
    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('petition_id', sa.Integer(), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('target_label', sa.String(length=400), nullable=False),
    sa.Column('delivered_on', sa.Date(), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('note', sa.String(length=1000), nullable=False),
    sa.Column('pack_sha256', sa.String(length=64), nullable=False),
    sa.Column('response_requested_by', sa.Date(), nullable=True),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('link_nonce_hash', sa.String(length=64), nullable=True),
    sa.Column('link_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('link_revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['petition_id'], ['petitions.id'], name=op.f('fk_deliveries_petition_id_petitions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_deliveries_recorded_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['target_id'], ['delivery_targets.id'], name=op.f('fk_deliveries_target_id_delivery_targets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('link_nonce_hash', name=op.f('uq_deliveries_link_nonce_hash'))
    )
    op.create_index(op.f('ix_deliveries_petition_id'), 'deliveries', ['petition_id'], unique=False)
    op.create_table('delivery_packs',
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('manifest_json', sa.Text(), nullable=False),
    sa.Column('signers_csv', sa.Text(), nullable=False),
    sa.Column('pdf', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_delivery_packs_delivery_id_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('delivery_id', name=op.f('pk_delivery_packs'))
    )
    op.create_table('delivery_responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('petition_id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=12), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=500), nullable=False),
    sa.Column('responded_on', sa.Date(), nullable=False),
    sa.Column('responder', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_delivery_responses_delivery_id_deliveries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['petition_id'], ['petitions.id'], name=op.f('fk_delivery_responses_petition_id_petitions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_responses'))
    )
    op.create_index(op.f('ix_delivery_responses_delivery_id'), 'delivery_responses', ['delivery_id'], unique=False)
    op.create_index(op.f('ix_delivery_responses_petition_id'), 'delivery_responses', ['petition_id'], unique=False)
    op.create_table('timeline_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('petition_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('happened_on', sa.Date(), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('pack_sha256', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('recorded_by', sa.String(length=20), nullable=False),
    sa.Column('corrects_id', sa.Integer(), nullable=True),
    sa.Column('once_key', sa.String(length=80), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['corrects_id'], ['timeline_entries.id'], name=op.f('fk_timeline_entries_corrects_id_timeline_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timeline_entries')),
    sa.UniqueConstraint('once_key', name=op.f('uq_timeline_entries_once_key'))
    )
    op.create_index(op.f('ix_timeline_entries_petition_id'), 'timeline_entries', ['petition_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION timeline_append_only() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN RAISE EXCEPTION '{_GUARD}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER timeline_append_only BEFORE UPDATE OR DELETE ON timeline_entries"
            " FOR EACH ROW EXECUTE FUNCTION timeline_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER timeline_no_{event.lower()} BEFORE {event} ON timeline_entries"
                f" BEGIN SELECT RAISE(ABORT, '{_GUARD}'); END"
            )


def downgrade() -> None:
    op.drop_table('timeline_entries')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS timeline_append_only()")
    op.drop_index(op.f('ix_delivery_responses_petition_id'), table_name='delivery_responses')
    op.drop_index(op.f('ix_delivery_responses_delivery_id'), table_name='delivery_responses')
    op.drop_table('delivery_responses')
    op.drop_table('delivery_packs')
    op.drop_index(op.f('ix_deliveries_petition_id'), table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_index(op.f('ix_delivery_targets_petition_id'), table_name='delivery_targets')
    op.drop_table('delivery_targets')
