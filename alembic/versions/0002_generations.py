"""generations, and the link from an answer to the generation that wrote it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa

import shared.db
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chat_id", sa.Uuid(), nullable=False),
        sa.Column("question_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", shared.db.UTCDateTime(), nullable=True),
        sa.Column("first_token_at", shared.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", shared.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name=op.f("fk_generations_chat_id_chats"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["question_id"],
            ["conversations.id"],
            name=op.f("fk_generations_question_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
    )
    op.create_index(op.f("ix_generations_chat_id"), "generations", ["chat_id"], unique=False)
    op.create_index(
        "uq_generations_active_chat",
        "generations",
        ["chat_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    )
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("generation_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch.create_index(
            batch.f("ix_conversations_generation_id"), ["generation_id"], unique=False
        )
        batch.create_foreign_key(
            batch.f("fk_conversations_generation_id_generations"),
            "generations",
            ["generation_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_constraint(
            batch.f("fk_conversations_generation_id_generations"), type_="foreignkey"
        )
        batch.drop_index(batch.f("ix_conversations_generation_id"))
        batch.drop_column("status")
        batch.drop_column("generation_id")
    op.drop_index("uq_generations_active_chat", table_name="generations")
    op.drop_index(op.f("ix_generations_chat_id"), table_name="generations")
    op.drop_table("generations")
