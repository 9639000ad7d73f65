"""r1exp.observe.gc_pauses: the garbage collector's pauses, per interval (a training step: `time/gc`, `gc/full_collections`
in every log line; tests/test_timing.py reads them from real runs).

- `Pauses` counts real collections of the interpreter: their seconds and how many were full ones, and starts again
  after each `take()`; removed, it counts nothing.
- A collection that was already running when it was installed is not counted half.
- One meter per process: a run that failed before training ended leaves none counting next to the next run's.
"""

from __future__ import annotations

import gc

from r1exp.observe.gc_pauses import Pauses


def test_pauses_count_the_collections_that_run_and_start_again_after_take():
    pauses = Pauses().install()
    try:
        pauses.take()
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
        seconds, full = pauses.take()
        assert full == 2 and seconds > 0
        assert pauses.take() == (0.0, 0)
    finally:
        pauses.remove()
    assert pauses not in gc.callbacks
    gc.collect(2)
    assert pauses.take() == (0.0, 0)   # removed: no longer counts


def test_installing_twice_counts_once_and_a_meter_left_behind_is_replaced():
    left_behind = Pauses().install()          # a run whose training raised: never removed
    pauses = Pauses().install().install()
    try:
        assert left_behind not in gc.callbacks and gc.callbacks.count(pauses) == 1
        pauses.take()
        gc.collect(2)
        assert pauses.take()[1] == 1
    finally:
        pauses.remove()


def test_a_collection_running_when_installed_is_not_counted():
    pauses = Pauses(clock=iter([1.0, 1.5]).__next__)
    pauses("stop", {"generation": 2})      # its start was never seen
    assert pauses.take() == (0.0, 0)
    pauses("start", {"generation": 2})
    pauses("stop", {"generation": 2})
    assert pauses.take() == (0.5, 1)
