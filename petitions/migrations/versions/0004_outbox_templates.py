"""outbox keeps a template name and context; the worker renders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 12:50:00.000000

Messages queued from now on store `template` and a small JSON `context` and are rendered by the
worker when it sends them. The rendered columns stay, nullable, so that messages queued before
the upgrade are still sent as they are; once sent, every one of them is wiped to NULL.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('template', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('context', sa.JSON(none_as_null=True), nullable=True))
        batch_op.alter_column('subject', existing_type=sa.String(length=200), nullable=True)
        batch_op.alter_column('body_text', existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    # The old schema cannot hold an unrendered message: what is still queued in the new shape
    # fails visibly (address wiped) rather than going out empty.
    op.execute(
        "UPDATE outbox SET status = 'failed', recipient = NULL, context = NULL,"
        " last_error = 'not rendered: schema downgraded below 0004'"
        " WHERE template IS NOT NULL AND status = 'queued'"
    )
    op.execute(
        "UPDATE outbox SET subject = COALESCE(subject, ''), body_text = COALESCE(body_text, '')"
        " WHERE subject IS NULL OR body_text IS NULL"
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('body_text', existing_type=sa.Text(), nullable=False)
        batch_op.alter_column('subject', existing_type=sa.String(length=200), nullable=False)
        batch_op.drop_column('context')
        batch_op.drop_column('template')
