"""The demo ``make demo`` starts: ``uvicorn examples.demo:app``, then open http://127.0.0.1:8000.

One page, five parts, each in its own small module:

- ``notes.py``   a form posts a note; a `StreamRouter` subscriber validates it (pydantic),
                 handles it with ``Depends`` and publishes an event; invalid notes become
                 dead letters. The page shows both as `EventStream`s that resume after a
                 reconnect with ``Last-Event-ID``.
- ``chat.py``    a WebSocket chat in MessagePack (binary frames) or JSON (text frames),
                 fanned out through the broker so every open page sees every message.
- ``status.py``  a sub-app mounted with ``router.mount``: its lifespan really runs.
- ``app.py``     puts them on one `StreamRouter` (AsyncAPI page, health check) and serves the
                 page. The broker is a `MemoryBroker`, or a `RedisBroker` when ``REDIS_URL``
                 is set (then run several workers: ``uvicorn examples.demo:app --workers 4``).
"""

from .app import create_app

__all__ = ["app", "create_app"]

app = create_app()
