"""Generations: one run of a model answering a chat's last Human message."""
