"""Measured GPU memory of a run, to set next to the memory plan's prediction (docs/benchmarks.md).

TRL colocate and Unsloth fast_inference keep trainer and vLLM engine in one process, so the device-level peak
(total - free, polled by a thread) is the number to compare with the plan's total; torch's own counters split
out what went through its allocator. Nothing happens without CUDA.

Per phase of a step (r1exp.observe.timing), `take_allocated_peak` reads torch's peak allocation since the last call and
starts a new interval; the overall peak is kept here, so `PeakMemory` still reports the run's maximum.
"""

from __future__ import annotations

import sys
import threading

from r1exp.plan.memory import GiB


_process_peaks = {"allocated": 0, "reserved": 0}  # the largest interval peaks taken so far (torch's own counters
                                                  # restart at every take)


def take_allocated_peak() -> int:
    """Bytes: the most torch's allocator held since the previous call (or the start), then a new interval begins.
    0 without CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0
    peak = torch.cuda.max_memory_allocated()
    _process_peaks["allocated"] = max(_process_peaks["allocated"], peak)
    _process_peaks["reserved"] = max(_process_peaks["reserved"], torch.cuda.max_memory_reserved())
    torch.cuda.reset_peak_memory_stats()
    return peak


def process_peak(kind: str) -> int:
    """Bytes: torch's peak `allocated` or `reserved` memory over the process, across the intervals
    `take_allocated_peak` started."""
    torch = sys.modules["torch"]
    now = torch.cuda.max_memory_allocated() if kind == "allocated" else torch.cuda.max_memory_reserved()
    return max(_process_peaks[kind], now)


class PeakMemory:
    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak_used = 0
        self.baseline_used = 0
        self._stop = threading.Event()
        self._thread = None
        self.enabled = False

    def __enter__(self):
        try:
            import torch
        except ImportError:
            return self
        if not torch.cuda.is_available():
            return self
        self.enabled = True
        self._torch = torch
        free, total = torch.cuda.mem_get_info()
        self.baseline_used = total - free
        self.peak_used = self.baseline_used
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(self.interval_s):
            free, total = self._torch.cuda.mem_get_info()
            self.peak_used = max(self.peak_used, total - free)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        return False

    def summary(self) -> dict:
        if not self.enabled:
            return {}
        t = self._torch
        return {
            "gpu/peak_used_gb": round(self.peak_used / GiB, 2),
            "gpu/used_before_train_gb": round(self.baseline_used / GiB, 2),
            "gpu/torch_max_allocated_gb": round(process_peak("allocated") / GiB, 2),
            "gpu/torch_max_reserved_gb": round(process_peak("reserved") / GiB, 2),
            "gpu/device_total_gb": round(t.cuda.mem_get_info()[1] / GiB, 2),
        }

