"""Tasks one after another in the driver's own process: for debugging (a breakpoint reaches the job) and tests."""

from __future__ import annotations

from collections import deque
from typing import Iterator

from harness.study.executors.base import Executor, Outcome, Task, job_outcome


class InProcessExecutor(Executor):
    name = "inprocess"

    def __init__(self) -> None:
        self.queue: deque[Task] = deque()

    def submit(self, task: Task) -> None:
        self.queue.append(task)

    def outcomes(self) -> Iterator[Outcome]:
        while self.queue:
            task = self.queue.popleft()
            try:
                value = task()
            except Exception as e:  # noqa: BLE001 - a stage's error is its outcome, as on every backend
                yield Outcome(task, error=e)
            else:
                yield job_outcome(task, value)

    def cancel(self, grace: float) -> None:
        self.queue.clear()  # the task in flight is this process's own: the signal has already reached it
