"""A command run as a child process of an Airflow task: its output goes to the task log line by line,
a timeout kills it, and so does killing the task (it runs in its own session, so nothing is orphaned).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    code: int
    tail: list[str]
    timed_out: bool

    def last_lines(self, count: int = 5) -> str:
        return " | ".join(self.tail[-count:])


class ChildProcess:
    def __init__(self, label: str) -> None:
        self.label = label
        self._process: subprocess.Popen[str] | None = None

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout_seconds: float,
            log: logging.Logger) -> Finished:
        process = self._process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            os.killpg(process.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout_seconds, stop)
        watchdog.start()
        tail: deque[str] = deque(maxlen=20)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                tail.append(line.rstrip())
                log.info("%s | %s", self.label, line.rstrip())
            code = process.wait()
        finally:
            watchdog.cancel()
            self.kill()
        return Finished(code=code, tail=list(tail), timed_out=timed_out.is_set())

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
