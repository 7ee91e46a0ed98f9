"""The web tier: a thin Starlette app serving the JSON API and the SSE streams."""
