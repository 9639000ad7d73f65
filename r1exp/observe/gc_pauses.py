"""How long Python's cyclic garbage collector held a training step (r1exp.observe.timing logs it as `time/gc` and
`gc/full_collections` per step).

A run's process holds about a million Python objects once torch, transformers, TRL and vLLM are imported and the
model, engine and trainer are built; a full collection walks every tracked object that is not frozen (0.37 s for the
0.76 million left after the imports alone, on a 2-core CPU), and whatever runs then waits, vLLM's decoding loop
included. vLLM freezes the heap when its engine starts (`gc.freeze()` in its EngineCore), which covers most of it.
Measured on the H200 (docs/benchmarks.md): one full collection per step, 0.02-0.05 s of a 1.5-4 s step,
and freezing the heap again before training (everything built after the engine) saved 0.005-0.01 s of it; so r1exp
measures the collector and leaves it alone.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

OLDEST = 2  # the generation a full collection collects


class Pauses:
    """A `gc.callbacks` entry: the seconds collections took and how many were full ones, since the last `take()`.
    Counts collections in every thread (the collector stops them all)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds = 0.0
        self.full = 0
        self._start: float | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = self.clock()
            return
        if self._start is None:   # installed while a collection was running
            return
        self.seconds += self.clock() - self._start
        self._start = None
        if info.get("generation") == OLDEST:
            self.full += 1

    def install(self) -> Pauses:
        """The process's one meter: one left by an earlier run that ended before its training did (an exception, so
        no `remove`) is replaced, not kept counting next to this one."""
        gc.callbacks[:] = [c for c in gc.callbacks if not isinstance(c, Pauses)]
        gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def take(self) -> tuple[float, int]:
        """(seconds, full collections) since the previous call, and start again from zero."""
        out = (self.seconds, self.full)
        self.seconds, self.full = 0.0, 0
        return out
