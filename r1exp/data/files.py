"""Reading records (dicts) from a local file or a hub dataset, without converting them yet.

`data.path` is a local file (.jsonl, .json, .csv, .parquet; `data.format` overrides the suffix), a local folder
of such files, or a hub dataset name (`data.subset` picks its configuration). Local files are read with the
standard library (parquet with pyarrow), so a dry run can read a sample quickly; folders and hub names go through
`datasets.load_dataset`. Records come back in the file's order.

A file that cannot be read as records raises `DataError` (a ConfigError: exit status 2) naming the file, the line
(or record) and what is wrong: a line that is not JSON, bytes that are not UTF-8, a line that is not an object, a
folder of files in several formats. `read_located` gives each record with where it came from ("line 161"), so
later checks (a missing field) can name it too.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from pathlib import Path

from r1exp.errors import ConfigError, Problem

FORMATS = ("jsonl", "json", "csv", "parquet")
UTF8_FIX = "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)"


class DataError(ConfigError, ValueError):
    """A data file that cannot be used as it is: which file, where in it, what is wrong and the fix."""

    @classmethod
    def at(cls, path, where: str, why: str, fix: str, key: str = "data.path") -> DataError:
        place = f"{path}, {where}" if where else str(path)
        return cls([Problem(key, str(path), f"{place}: {why}", fix, rule="data.file")])
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
    return [record for _, record in read_located(data_cfg, limit)]


def read_located(data_cfg, limit: int | None = None) -> list[tuple[str, dict]]:
    """Up to `limit` (where, record) pairs, in order: where is "line N" (jsonl, csv), "record N" (json, parquet, a
    folder or hub dataset)."""
    path = local_path(data_cfg)
    split = str(data_cfg.get("split", "train"))
    if path is None:
        return _numbered(_hub(str(data_cfg.path), data_cfg.get("subset"), split, limit))
    if not path.exists():
        raise FileNotFoundError(f"data.path={data_cfg.path}: no such file")
    fmt = file_format(data_cfg, path)
    if fmt is None:
        if path.is_dir():
            return _numbered(_folder(path, data_cfg.get("subset"), split, limit))
        raise ValueError(f"data.path={path}: unknown file type {path.suffix!r}; set data.format to one of {FORMATS}")
    return READERS[fmt](path, limit, split)


def _numbered(records: list[dict]) -> list[tuple[str, dict]]:
    return [(f"record {i}", r) for i, r in enumerate(records, 1)]


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


def _jsonl(path: Path, limit, split) -> list[tuple[str, dict]]:
    """Line by line, in bytes: a bad line is named by its number (not by a decoder's chunk)."""
    out: list = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if limit is not None and len(out) >= limit:
                break
            if not raw.strip():
                continue
            text = _utf8(raw, path, n)
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError.at(path, f"line {n}", f"not valid JSON ({e.msg} at column {e.colno}): "
                                   f"{_clip(text)}", "fix or remove that line: each line of a .jsonl file is one "
                                   "JSON object") from None
            out.append((f"line {n}", _record(record, path, f"line {n}")))
    return out


def _utf8(raw: bytes, path: Path, n: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError.at(path, f"line {n}", f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                           UTF8_FIX) from None


def _record(value, path: Path, where: str) -> dict:
    if not isinstance(value, dict):
        raise DataError.at(path, where, f"a JSON {type(value).__name__} ({_clip(json.dumps(value))}) where a record "
                           "(an object {...}) belongs", "make every record an object with the prompt and answer "
                           "fields")
    return value


def _clip(text: str, n: int = 80) -> str:
    text = text.strip()
    return repr(text if len(text) <= n else text[:n] + "...")


def _json(path: Path, limit, split) -> list[tuple[str, dict]]:
    """A list of records, or an object holding one under the split's name (or under its only key)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError.at(path, f"line {line}", "not UTF-8 text", UTF8_FIX) from None
    except json.JSONDecodeError as e:
        raise DataError.at(path, f"line {e.lineno}", f"not valid JSON ({e.msg} at column {e.colno})",
                           "fix the file (a .json file is one JSON list of records; one record per line is "
                           ".jsonl)") from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        data = lists.get(split) or (next(iter(lists.values())) if len(lists) == 1 else None)
        if data is None:
            raise DataError.at(path, "", f"expected a list of records, or an object with a {split!r} list",
                               "make the file a JSON list of objects, or set data.split to the key of the list")
    if not isinstance(data, list):
        raise DataError.at(path, "", f"a JSON {type(data).__name__}, not a list of records",
                           "make the file a JSON list of objects")
    return [(f"record {i}", _record(r, path, f"record {i}")) for i, r in enumerate(itertools.islice(data, limit), 1)]


def _csv(path: Path, limit, split) -> list[tuple[str, dict]]:
    with path.open("rb") as f:  # UTF-8 first, line by line, so a bad byte is named by its line
        for n, raw in enumerate(f, 1):
            _utf8(raw, path, n)
    out: list = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            for row in itertools.islice(reader, limit):
                out.append((f"line {reader.line_num}", row))
        except csv.Error as e:
            raise DataError.at(path, f"line {reader.line_num}", f"not valid CSV ({e})", "fix that line") from None
    return out


def _parquet(path: Path, limit, split) -> list[tuple[str, dict]]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        rows.extend(batch.to_pylist())
        if limit is not None and len(rows) >= limit:
            break
    return _numbered(rows[:limit] if limit is not None else rows)


def _folder(path: Path, subset, split: str, limit) -> list[dict]:
    """A local folder through `datasets`, which reads one format per folder: several are refused by name."""
    kinds = Counter(SUFFIXES.get(p.suffix.lower(), p.suffix.lower() or p.name) for p in path.rglob("*")
                    if p.is_file() and not p.name.startswith("."))
    if len(kinds) > 1:
        found = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        raise DataError.at(path, "", f"the folder holds files of several formats ({found}); a folder is read as "
                           "one dataset of one format", "point data.path at one file, or keep files of one format "
                           "in the folder")
    try:
        return _hub(str(path), subset, split, limit)
    except Exception as e:  # noqa: BLE001 - datasets' errors (DatasetGenerationError, ...) name no line: say which
        cause = e.__cause__ or e
        raise DataError.at(path, "", f"datasets could not read the folder: {type(cause).__name__}: "
                           f"{str(cause).splitlines()[0] if str(cause) else ''}",
                           "check the files in it, or point data.path at one file (r1exp then names the line "
                           "that is wrong)") from None


def _hub(name: str, subset, split: str, limit) -> list[dict]:
    from datasets import load_dataset

    dataset = load_dataset(name, subset, split=split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return [dict(r) for r in dataset]


READERS = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}
