"""A background thread that looks at something every so often until it is stopped."""

from __future__ import annotations

import threading


class PollingThread(threading.Thread):
    def __init__(self, name: str, interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll()
            self._stop_event.wait(self.interval)

    def poll(self) -> None:
        raise NotImplementedError
