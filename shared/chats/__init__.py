"""Chats and their messages ("conversations" in the seed's words)."""
