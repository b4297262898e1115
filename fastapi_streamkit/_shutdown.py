"""Ending open streams when the server shuts down.

uvicorn runs the lifespan shutdown only after every connection closed, so an endless stream
would keep the server alive forever. While at least one stream is open, the SIGTERM/SIGINT
handlers of the main thread are *chained*: ours ends the open streams, then calls the previous
handler (the server's). When the last stream closes, the previous handler is put back, but only
if ours is still the current one. `request_shutdown()` does the same by hand, from any thread.

The registry is process-wide because signals are: it holds only the streams open right now.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["OpenStreams", "open_streams", "request_shutdown"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_Handler = Callable[[int, FrameType | None], Any] | int | None


class OpenStreams:
    """The streams open in this process, each with a thread-safe way to end it."""

    def __init__(self) -> None:
        self._stops: dict[int, Callable[[], None]] = {}
        self._previous: dict[int, _Handler] = {}

    def add(self, key: int, stop: Callable[[], None]) -> None:
        """Register an open stream; ``stop`` must be safe to call from any thread."""
        self._stops[key] = stop
        if len(self._stops) == 1:
            self._chain()

    def discard(self, key: int) -> None:
        """Forget a stream that ended."""
        if self._stops.pop(key, None) is not None and not self._stops:
            self._unchain()

    def __len__(self) -> int:
        return len(self._stops)

    def shutdown(self) -> None:
        """End every stream open at this moment (final body message sent, source closed)."""
        for stop in tuple(self._stops.values()):
            stop()

    def _chain(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if previous == self._on_signal:  # ==: each `self._on_signal` is a new bound method
                continue
            try:
                signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                return
            self._previous[sig] = previous

    def _unchain(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in tuple(self._previous.items()):
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            del self._previous[sig]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.shutdown()
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            # What the process would have done without us: die of the signal.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


open_streams = OpenStreams()


def request_shutdown() -> None:
    """End every stream open at the moment of the call: final body sent, source closed.

    Safe from any thread and from a signal handler. Use it when the server runs in a thread
    or is driven by hand; under uvicorn in the main thread SIGTERM/SIGINT already do it.
    """
    open_streams.shutdown()
