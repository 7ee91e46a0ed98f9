"""Core of the chat backend: settings, database, schemas, errors and the token bus.

Both ``web`` and ``worker`` import this package; it imports neither of them.
"""
