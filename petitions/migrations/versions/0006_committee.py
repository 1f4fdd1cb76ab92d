"""committee: members, invitations, pending actions and log; review before listing

Revision ID: 0006_committee
Revises: 0005
Create Date: 2026-12-04 22:40:00.000000

A letter's one organizer (`petitions.organizer_id`) becomes the owner membership of its
committee, and the column goes. Letters gain the two-person rule and an admin's listing
approval; takedowns record why an admin hid a letter and the committee's appeal.
"""

from alembic import op
import sqlalchemy as sa


revision = "0006_committee"
down_revision = "0006"
branch_labels = None
depends_on = None

_LOG_GUARD = "the committee log is append-only"


def _require_foreign_keys_off() -> None:
    """Batch mode rebuilds `petitions` by dropping it; with foreign keys on, SQLite would delete
    every row that refers to it. env.py turns them off; refuse to run if they are on."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("SQLite foreign keys must be off while petitions is rebuilt")


def upgrade() -> None:
    _require_foreign_keys_off()
    op.create_table(
        "committee_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("shown_on_letter", sa.Boolean(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_committee_members_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_committee_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committee_members")),
        sa.UniqueConstraint(
            "petition_id", "user_id", name=op.f("uq_committee_members_petition_id_user_id")
        ),
    )
    op.create_index(
        op.f("ix_committee_members_user_id"), "committee_members", ["user_id"], unique=False
    )
    op.create_table(
        "committee_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["users.id"],
            name=op.f("fk_committee_invitations_invited_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_committee_invitations_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committee_invitations")),
        sa.UniqueConstraint("nonce_hash", name=op.f("uq_committee_invitations_nonce_hash")),
    )
    op.create_index(
        op.f("ix_committee_invitations_petition_id"),
        "committee_invitations",
        ["petition_id"],
        unique=False,
    )
    op.create_table(
        "committee_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("proposed_by_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["users.id"],
            name=op.f("fk_committee_actions_decided_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_committee_actions_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["proposed_by_id"],
            ["users.id"],
            name=op.f("fk_committee_actions_proposed_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committee_actions")),
    )
    op.create_index(
        op.f("ix_committee_actions_petition_id"), "committee_actions", ["petition_id"], unique=False
    )
    op.create_table(
        "committee_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committee_log")),
    )
    op.create_index(
        op.f("ix_committee_log_petition_id"), "committee_log", ["petition_id"], unique=False
    )
    op.create_table(
        "takedowns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("hidden_by_id", sa.Integer(), nullable=True),
        sa.Column("hidden_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("appeal_message", sa.Text(), nullable=True),
        sa.Column("appealed_by_id", sa.Integer(), nullable=True),
        sa.Column("appealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by_id", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reinstated", sa.Boolean(), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["answered_by_id"],
            ["users.id"],
            name=op.f("fk_takedowns_answered_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["appealed_by_id"],
            ["users.id"],
            name=op.f("fk_takedowns_appealed_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["hidden_by_id"],
            ["users.id"],
            name=op.f("fk_takedowns_hidden_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_takedowns_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_takedowns")),
    )
    op.create_index(op.f("ix_takedowns_petition_id"), "takedowns", ["petition_id"], unique=False)

    # Each letter's organizer becomes the owner of its committee.
    op.execute(
        "INSERT INTO committee_members (petition_id, user_id, role, shown_on_letter, joined_at)"
        " SELECT id, organizer_id, 'owner', false, created_at FROM petitions"
    )
    with op.batch_alter_table("petitions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("listing_approved_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("two_person_rule", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.drop_index(batch_op.f("ix_petitions_organizer_id"))
        batch_op.drop_constraint(batch_op.f("fk_petitions_organizer_id_users"), type_="foreignkey")
        batch_op.drop_column("organizer_id")
    # Letters already published were listed before review existed; they stay listed.
    op.execute("UPDATE petitions SET listing_approved_at = published_at WHERE state <> 'draft'")

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION committee_log_append_only() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN RAISE EXCEPTION '{_LOG_GUARD}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER committee_log_append_only BEFORE UPDATE OR DELETE ON committee_log"
            " FOR EACH ROW EXECUTE FUNCTION committee_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER committee_log_no_{event.lower()} BEFORE {event} ON committee_log"
                f" BEGIN SELECT RAISE(ABORT, '{_LOG_GUARD}'); END"
            )


def downgrade() -> None:
    _require_foreign_keys_off()
    with op.batch_alter_table("petitions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organizer_id", sa.Integer(), nullable=True))
    # The earliest owner gets the letter back; a letter without one goes with its committee.
    op.execute(
        "UPDATE petitions SET organizer_id = (SELECT m.user_id FROM committee_members m"
        " WHERE m.petition_id = petitions.id AND m.role = 'owner' ORDER BY m.id LIMIT 1)"
    )
    op.execute("DELETE FROM petitions WHERE organizer_id IS NULL")
    with op.batch_alter_table("petitions", schema=None) as batch_op:
        batch_op.alter_column("organizer_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_petitions_organizer_id_users"),
            "users",
            ["organizer_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(
            batch_op.f("ix_petitions_organizer_id"), ["organizer_id"], unique=False
        )
        batch_op.drop_column("two_person_rule")
        batch_op.drop_column("listing_approved_at")

    op.drop_table("takedowns")
    op.drop_table("committee_log")
    op.drop_table("committee_actions")
    op.drop_table("committee_invitations")
    op.drop_table("committee_members")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS committee_log_append_only()")
