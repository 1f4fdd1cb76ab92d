"""proofs: one-time phrases for proving an address by a sent message; address hashes erasable

Revision ID: 0008_proofs
Revises: 0007_subscribers
Create Date: 2026-12-04 23:10:00.000000

A signer can prove a work address with a DKIM-signed message they send themself, quoting a
phrase shown to their browser (`proof_phrases`, stored as keyed hashes). Closing a letter
erases the address hash of each of its signatures, so `signatures.address_hash` may be NULL
(NULLs never collide in the unique constraint, on SQLite or PostgreSQL).
"""

from alembic import op
import sqlalchemy as sa


revision = '0008_proofs'
down_revision = '0007_subscribers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.alter_column(
            'address_hash', existing_type=sa.String(length=64), nullable=True
        )
    op.create_table('proof_phrases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle', sa.String(length=32), nullable=False),
    sa.Column('petition_id', sa.Integer(), nullable=False),
    sa.Column('phrase_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['petition_id'], ['petitions.id'], name=op.f('fk_proof_phrases_petition_id_petitions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proof_phrases')),
    sa.UniqueConstraint('handle', name=op.f('uq_proof_phrases_handle'))
    )
    with op.batch_alter_table('proof_phrases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proof_phrases_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_proof_phrases_petition_id'), ['petition_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('proof_phrases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proof_phrases_petition_id'))
        batch_op.drop_index(batch_op.f('ix_proof_phrases_expires_at'))
    op.drop_table('proof_phrases')
    # An erased hash cannot come back: such rows get a placeholder unique to the row.
    op.execute(
        "UPDATE signatures SET address_hash = 'erased-' || CAST(id AS VARCHAR(20))"
        " WHERE address_hash IS NULL"
    )
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.alter_column(
            'address_hash', existing_type=sa.String(length=64), nullable=False
        )
