"""tokens: index only the tokens each lookup serves

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 04:00:00.000000

Every signature writes a token row (its confirmation) and every confirmation another (its
withdrawal), so each index on `tokens` costs each signer a B-tree write. Two of them served
only some tokens: `code_hash` is looked up only for standalone withdrawal codes (other codes
are checked against their token's handle), and `user_id` is NULL for every signer's token. Both
become partial indexes over the tokens they serve.
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_WITHDRAWALS = "purpose = 'withdraw_signature'"
_ACCOUNTS = "user_id IS NOT NULL"


def upgrade() -> None:
    op.drop_index('ix_tokens_code_hash', table_name='tokens')
    op.drop_index('ix_tokens_user_id', table_name='tokens')
    op.create_index(
        'ix_tokens_code_hash', 'tokens', ['code_hash'],
        sqlite_where=sa.text(_WITHDRAWALS), postgresql_where=sa.text(_WITHDRAWALS),
    )
    op.create_index(
        'ix_tokens_user_id', 'tokens', ['user_id'],
        sqlite_where=sa.text(_ACCOUNTS), postgresql_where=sa.text(_ACCOUNTS),
    )


def downgrade() -> None:
    op.drop_index('ix_tokens_user_id', table_name='tokens')
    op.drop_index('ix_tokens_code_hash', table_name='tokens')
    op.create_index('ix_tokens_user_id', 'tokens', ['user_id'])
    op.create_index('ix_tokens_code_hash', 'tokens', ['code_hash'])

