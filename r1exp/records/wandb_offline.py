"""Reading an offline W&B run back from a run folder: what `wandb sync` would upload, without a server.

The tests read it to see that the config, the metrics, the completions table and the model artifact are there;
a person can read it to look at an offline run without uploading it.

The .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of records,
each with a 7-byte header (checksum, length, type: full/first/middle/last) around a serialized wandb.proto Record.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _whole_records(data: bytes):
    """(end position, serialized record) for each whole record of a .wandb file's bytes, in order; stops at a record
    whose bytes end early (a file cut short)."""
    pos, parts = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        if pos + _HEADER + length > len(data):
            return
        chunk, pos = data[pos + _HEADER:pos + _HEADER + length], pos + _HEADER + length
        parts = chunk if kind in (_FULL, _FIRST) else parts + chunk
        if kind in (_FULL, _LAST):
            yield pos, parts


def _records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    for _end, parts in _whole_records(data):
        record = pb.Record()
        record.ParseFromString(parts)
        yield record


def _items(items) -> dict:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def read_offline_run(run_dir: Path) -> dict:
    """What an offline W&B run in run_dir/wandb holds: run (id, name, group, tags, project), config, history (one
    dict per logged row), summary, artifacts (name, type, files), args (the recorded command line)."""
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no offline W&B run under {run_dir}/wandb")
    out = {"run": {}, "config": {}, "history": [], "summary": {}, "artifacts": [], "args": []}
    for record in (r for f in files for r in _records(f)):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {"id": r.run_id, "name": r.display_name, "group": r.run_group, "project": r.project,
                          "tags": list(r.tags), "job_type": r.job_type}
            out["config"].update(_items(r.config.update))
        elif kind == "config":
            out["config"].update(_items(record.config.update))
        elif kind == "history":
            out["history"].append(_items(record.history.item))
        elif kind == "summary":
            out["summary"].update(_items(record.summary.update))
        elif kind == "artifact":
            a = record.artifact
            out["artifacts"].append({"name": a.name, "type": a.type,
                                     "files": sorted(e.path for e in a.manifest.contents)})
        elif kind == "environment":
            out["args"] = list(record.environment.args)
    return out


def trim_partial(path: Path) -> bool:
    """Cut a .wandb file that a full disk ended in the middle of a record back to its last whole record (what
    `wandb sync` and `read_offline_run` can read); whether it was cut. Truncating needs no free space."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    data = path.read_bytes()
    if data[:4] != b":W&B":
        return False
    good = _HEADER
    for end, parts in _whole_records(data):
        try:
            pb.Record().ParseFromString(parts)
        except Exception:  # noqa: BLE001 - a record cut short
            break
        good = end
    if good >= len(data.rstrip(b"\0")) or good >= len(data):
        return False
    with open(path, "r+b") as f:
        f.truncate(good)
    return True
