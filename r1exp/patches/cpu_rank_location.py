"""Checkpoints of multi-process CPU runs load again: torch reads the location tag "cpu:N" as the CPU.

Why: accelerate gives each CPU rank the device `cpu:<local rank>`, and transformers resumes with
torch.load(map_location=args.device), which torch cannot do for "cpu:0" ("don't know how to restore data location
... (tagged with cpu:0)"): a checkpoint of a 2-process CPU run could not be resumed. A CPU storage has no index, so
such a location is the CPU. It registers a deserializer with `torch.serialization.register_package` (priority 11,
before torch's own); a tag it does not know goes on to torch's. Switch: distributed=none (one process never needs it).
Verified on the versions in r1exp.patches.PATCHES["cpu_rank_location"].
"""

from __future__ import annotations

_registered = False


def install() -> bool:
    """Register the deserializer once per process; returns True when this call registered it."""
    global _registered
    if _registered:
        return False
    import torch.serialization

    torch.serialization.register_package(11, lambda obj: None, restore_location)
    _registered = True
    return True


def restore_location(storage, location: str):
    """The storage itself for a "cpu:N" tag (it is already on the CPU), None for any other tag (torch's)."""
    return storage if location.startswith("cpu:") else None
