"""TRL's completions table of a tool run, made writable: every message of a step's prompts and completions gets the
same keys, with text values.

TRL's `GRPOTrainer.log` builds one table of the step's prompts and completions (`log_completions`: the parquet file
under trainer/completions/ and the W&B `completions` table). In a tool run a completion is a list of messages of
different shapes: an assistant turn with `tool_calls` (a list of dicts), a tool turn with a `name`, a final assistant
turn without either, some with `reasoning_content` None. `wandb.Table` types its columns from the first row and
refuses the others ("Data row contained incompatible types ... Found extra keys: tool_calls"), which stopped the run
at its first logged step. Here, just before TRL writes the table, each message gets the union of the keys seen in its
column, a missing or None value as "", and a structured one (the tool calls, their arguments) as its JSON text.
Messages that already agree are left exactly as they were (a run without tools writes what it wrote before).
Verified on the versions in r1exp.patches.PATCHES["trl_completions_table"]; switch: logger=none or
++trainer.log_completions=false.
"""

from __future__ import annotations

import json

COLUMNS = ("prompt", "completion")
FIRST = ("role", "content")   # the keys every message has, in front


def uniform_messages(buffers) -> bool:
    """In place, on TRL's `_logs` buffers: the prompt and completion columns' messages with one set of keys and text
    values. Whether anything changed."""
    if not isinstance(buffers, dict):
        return False
    changed = False
    for name in COLUMNS:
        column = buffers.get(name)
        if column is None or not hasattr(column, "__setitem__"):
            continue
        rows = list(column)
        messages = [m for row in rows if isinstance(row, list) for m in row if isinstance(m, dict)]
        keys = sorted({k for m in messages for k in m}, key=lambda k: (FIRST.index(k) if k in FIRST else len(FIRST), k))
        if all(list(m) == keys and all(isinstance(v, str) for v in m.values()) for m in messages):
            continue
        for i, row in enumerate(rows):
            if isinstance(row, list):
                column[i] = [{k: _text(m.get(k)) for k in keys} if isinstance(m, dict) else m for m in row]
        changed = True
    return changed


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)
