"""Every table, imported in one place so ``Base.metadata`` is complete (Alembic uses it)."""

from shared.chats.models import Chat, Conversation
from shared.db import Base
from shared.generations.models import Generation

__all__ = ["Base", "Chat", "Conversation", "Generation"]
