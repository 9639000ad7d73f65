"""Reading records (dicts) from a local file or a hub dataset, without converting them yet.

`data.path` is a local file (.jsonl, .json, .csv, .parquet; `data.format` overrides the suffix), a local folder
of such files, or a hub dataset name (`data.subset` picks its configuration). Local files are read with the
standard library (parquet with pyarrow), so a dry run can read a sample quickly; folders and hub names go through
`datasets.load_dataset`. Records come back in the file's order.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

FORMATS = ("jsonl", "json", "csv", "parquet")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def local_path(data_cfg) -> Path | None:
    """The local file or folder data.path names, None for a hub name (or no path)."""
    path = data_cfg.get("path")
    if not path:
        return None
    p = Path(str(path)).expanduser()
    return p if p.exists() or looks_local(str(path)) else None


def looks_local(path: str) -> bool:
    """A path the user meant as a local file even if it does not exist (so it is reported as missing, not sent to
    the hub)."""
    return path.startswith(("/", "./", "../", "~")) or Path(path).suffix.lower() in SUFFIXES


def file_format(data_cfg, path: Path) -> str | None:
    """jsonl | json | csv | parquet for a file (data.format, else its suffix); None for a folder."""
    explicit = data_cfg.get("format")
    if explicit and explicit != "auto":
        return str(explicit)
    if path.is_dir():
        return None
    return SUFFIXES.get(path.suffix.lower())


def read_records(data_cfg, limit: int | None = None) -> list[dict]:
    """Up to `limit` records (all when None), in order."""
    path = local_path(data_cfg)
    if path is None:
        return _hub(str(data_cfg.path), data_cfg.get("subset"), str(data_cfg.get("split", "train")), limit)
    if not path.exists():
        raise FileNotFoundError(f"data.path={data_cfg.path}: no such file")
    fmt = file_format(data_cfg, path)
    if fmt is None:
        if path.is_dir():
            return _hub(str(path), data_cfg.get("subset"), str(data_cfg.get("split", "train")), limit)
        raise ValueError(f"data.path={path}: unknown file type {path.suffix!r}; set data.format to one of {FORMATS}")
    return READERS[fmt](path, limit, str(data_cfg.get("split", "train")))


def field_names(data_cfg) -> list[str] | None:
    """The fields of the first record of a local file, or None when that cannot be known cheaply (hub, folder)."""
    path = local_path(data_cfg)
    if path is None or not path.is_file() or file_format(data_cfg, path) is None:
        return None
    if file_format(data_cfg, path) == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    first = read_records(data_cfg, limit=1)
    return list(first[0]) if first else []


def _jsonl(path: Path, limit, split) -> list[dict]:
    with path.open() as f:
        rows = (json.loads(line) for line in f if line.strip())
        return list(itertools.islice(rows, limit))


def _json(path: Path, limit, split) -> list[dict]:
    """A list of records, or an object holding one under the split's name (or under its only key)."""
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        data = lists.get(split) or (next(iter(lists.values())) if len(lists) == 1 else None)
        if data is None:
            raise ValueError(f"{path}: expected a list of records, or an object with a {split!r} list")
    return list(itertools.islice(data, limit))


def _csv(path: Path, limit, split) -> list[dict]:
    with path.open(newline="") as f:
        return list(itertools.islice(csv.DictReader(f), limit))


def _parquet(path: Path, limit, split) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        rows.extend(batch.to_pylist())
        if limit is not None and len(rows) >= limit:
            return rows[:limit]
    return rows


def _hub(name: str, subset, split: str, limit) -> list[dict]:
    from datasets import load_dataset

    dataset = load_dataset(name, subset, split=split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return [dict(r) for r in dataset]


READERS = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}
