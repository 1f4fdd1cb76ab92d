"""tokens: the account index holds only account tokens

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 04:00:00.000000

Every signature writes a token row (its confirmation) and every confirmation another (its
withdrawal), so each index on `tokens` costs each signer a B-tree write. `user_id` is NULL for
every signer's token, so its index becomes a partial one over account tokens, which still
serves every lookup by account and the foreign key's cascade.
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_ACCOUNTS = "user_id IS NOT NULL"


def upgrade() -> None:
    op.drop_index('ix_tokens_user_id', table_name='tokens')
    op.create_index(
        'ix_tokens_user_id', 'tokens', ['user_id'],
        sqlite_where=sa.text(_ACCOUNTS), postgresql_where=sa.text(_ACCOUNTS),
    )


def downgrade() -> None:
    op.drop_index('ix_tokens_user_id', table_name='tokens')
    op.create_index('ix_tokens_user_id', 'tokens', ['user_id'])

