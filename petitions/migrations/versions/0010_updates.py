"""updates: a committee's updates to the addresses that asked for them, and which subscriber's
email each update queued until the worker settles it

Revision ID: 0010_updates
Revises: 0009_delivery
Create Date: 2026-12-04 23:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_updates"
down_revision = "0009_delivery"
branch_labels = None
# the subscribers table (0007) must exist whatever order the branches before this run in
depends_on = '0007_subscribers'


def upgrade() -> None:
    op.create_table(
        'updates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('petition_id', sa.Integer(), nullable=False),
        sa.Column('subject', sa.String(length=150), nullable=False),
        sa.Column('body_markdown', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('sent_on', sa.Date(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('queued_count', sa.Integer(), nullable=False),
        sa.Column('delivered_count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['petition_id'],
            ['petitions.id'],
            name=op.f('fk_updates_petition_id_petitions'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_updates')),
        sa.UniqueConstraint(
            'petition_id', 'sent_on', name=op.f('uq_updates_petition_id_sent_on')
        ),
    )
    op.create_index(op.f('ix_updates_petition_id'), 'updates', ['petition_id'])
    op.create_table(
        'update_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('update_id', sa.Integer(), nullable=False),
        sa.Column('subscriber_id', sa.String(length=32), nullable=False),
        sa.Column('outbox_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ['update_id'],
            ['updates.id'],
            name=op.f('fk_update_messages_update_id_updates'),
            ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['subscriber_id'],
            ['subscribers.id'],
            name=op.f('fk_update_messages_subscriber_id_subscribers'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_update_messages')),
        sa.UniqueConstraint(
            'update_id',
            'subscriber_id',
            name=op.f('uq_update_messages_update_id_subscriber_id'),
        ),
    )
    op.create_index(
        op.f('ix_update_messages_subscriber_id'), 'update_messages', ['subscriber_id']
    )
    op.create_index(op.f('ix_update_messages_outbox_id'), 'update_messages', ['outbox_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_update_messages_outbox_id'), table_name='update_messages')
    op.drop_index(op.f('ix_update_messages_subscriber_id'), table_name='update_messages')
    op.drop_table('update_messages')
    op.drop_index(op.f('ix_updates_petition_id'), table_name='updates')
    op.drop_table('updates')
