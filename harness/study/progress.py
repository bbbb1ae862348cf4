"""Progress of a study on stderr: a bar (done, running, failed, total, ETA) and a line per finished job."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts jobs as they finish; the ETA assumes the remaining jobs take as long as the finished ones."""

    def __init__(self, total: int, parallel: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.parallel, self.width = total, max(1, parallel), width
        self.done = self.failed = self.elsewhere = 0
        self.start = time.perf_counter()
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    @property
    def running(self) -> int:
        return min(self.parallel, self.total - self._finished())

    def job_finished(self, variant: str, seed: int, summary: dict) -> None:
        if summary["status"] == "ok":
            self.done += 1
            line = (f"  done   {variant:<16} seed {seed:<4} val F1 {summary['val_f1']:5.1f} %  "
                    f"test F1 {summary['test_f1']:5.1f} %  {summary['seconds']:7.1f} s")
        elif summary["status"] == "running_elsewhere":  # harness.study.job.ELSEWHERE (this module stays light)
            self.elsewhere += 1
            line = f"  ELSEWHERE {variant:<13} seed {seed:<4} running in another process: not run here"
        else:
            self.failed += 1
            line = f"  FAILED {variant:<16} seed {seed:<4} {summary['message'][:120]}"
        self._clear()
        print(line, file=self.stream)
        self.show()

    def _finished(self) -> int:
        return self.done + self.failed + self.elsewhere

    def eta_seconds(self) -> float | None:
        finished = self._finished()
        if finished == 0:
            return None
        elapsed = time.perf_counter() - self.start
        return elapsed / finished * (self.total - finished)

    def bar(self) -> str:
        finished = self._finished()
        filled = int(self.width * finished / max(self.total, 1))
        eta = self.eta_seconds()
        eta_text = "--:--" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done} done, {self.running} running, "
                f"{self.failed} failed, " + (f"{self.elsewhere} running elsewhere, " if self.elsewhere else "")
                + f"{self.total} total, ETA {eta_text}")

    def show(self) -> None:
        if self.tty:
            print("\r" + self.bar(), end="", file=self.stream, flush=True)
        else:
            print(self.bar(), file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.tty:
            print("\r" + " " * (len(self.bar()) + 2) + "\r", end="", file=self.stream)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream)
