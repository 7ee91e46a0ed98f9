"""chats belong to a tenant (the name of the API key that created them)

Revision ID: 0005_owner
Revises: 0003
Create Date: 2026-11-27

Chats that exist before this migration belong to the tenant 'default': the tenant of a
deployment without API keys, or of a key named 'default' (API_KEYS=default:<secret>).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005_owner"
down_revision: str | None = "0004_params"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.add_column(
            sa.Column("owner", sa.String(length=64), nullable=False, server_default="default")
        )
        batch.create_index("ix_chats_owner_created_at", ["owner", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.drop_index("ix_chats_owner_created_at")
        batch.drop_column("owner")
