"""Small apps and wire-level helpers for the streaming tests (subprocess apps run by uvicorn)."""
