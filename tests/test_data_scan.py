"""A bad record anywhere in a data file is named by file and line, before anything loads (the whole file is
scanned, r1exp.data.scan) and again at load time (exit 2, never a traceback)."""

from __future__ import annotations

import json

import pytest

from r1exp import data
from r1exp.config.compose import compose
from r1exp.config.rule import Context
from r1exp.data import files, scan

ROWS = 200
BAD_LINE = 161   # past the rows the other checks sample


def write(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else (line + "\n").encode() for line in lines))
    return path


def good_lines():
    return [json.dumps({"question": f"What is {i}+{i}?", "answer": str(2 * i)}) for i in range(ROWS)]


def with_line(tmp_path, line):
    lines = good_lines()
    lines[BAD_LINE - 1] = line
    return write(tmp_path / "data.jsonl", lines)


CASES = {
    "invalid JSON": ('{"question": "broken", "answer": ', "not valid JSON", "each line of a .jsonl file"),
    "missing field": (json.dumps({"question": "q"}), "no field 'answer'", "add the field"),
    "not UTF-8": (b'{"question": "caf\xe9", "answer": "1"}\n', "not UTF-8 text (byte 0xe9", "save the file as UTF-8"),
    "not an object": ("[1, 2]", "where a record (an object", "make every record an object"),
    "null answer": (json.dumps({"question": "q", "answer": None}), "'answer' is null", "give that record a value"),
    "5 MB prompt": (json.dumps({"question": "x" * 5_000_000, "answer": "1"}), "5,000,", "shorten or remove"),
}


@pytest.mark.parametrize("line,why,fix", CASES.values(), ids=CASES.keys())
def test_a_bad_record_is_named_by_file_and_line(tmp_path, line, why, fix):
    path = with_line(tmp_path, line)
    cfg = compose(["data=jsonl", f"data.path={path}"])
    found = list(scan.whole_file(Context(cfg, None, dry_run=False)))
    assert len(found) == 1, found
    assert f"{path}, line {BAD_LINE}: " in found[0].why and why in found[0].why and fix in found[0].fix


@pytest.mark.parametrize("case", ["invalid JSON", "missing field", "not UTF-8"])
def test_loading_the_data_stops_with_exit_2_naming_the_line(tmp_path, case):
    """What the build reads (r1exp.data.rows) raises a ConfigError (exit 2 in r1exp.run), not a traceback."""
    path = with_line(tmp_path, CASES[case][0])
    cfg = compose(["data=jsonl", f"data.path={path}"])
    with pytest.raises(files.DataError) as caught:
        data.rows(cfg.data)
    assert f"line {BAD_LINE}" in str(caught.value) and str(path) in str(caught.value)


def test_a_good_file_scans_whole(tmp_path):
    path = write(tmp_path / "data.jsonl", good_lines())
    cfg = compose(["data=jsonl", f"data.path={path}"])
    assert list(scan.whole_file(Context(cfg, None, dry_run=False))) == []
    assert scan.scan(cfg.data).records == ROWS


def test_num_samples_limits_the_scan_to_the_records_the_run_reads(tmp_path):
    path = with_line(tmp_path, "not json")
    cfg = compose(["data=jsonl", f"data.path={path}", f"data.num_samples={BAD_LINE - 1}"])
    assert list(scan.whole_file(Context(cfg, None, dry_run=False))) == []


def test_a_folder_of_mixed_formats_is_refused_by_name(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write(folder / "a.jsonl", good_lines()[:10])
    (folder / "b.csv").write_text("question,answer\nq,1\n")
    cfg = compose(["data=jsonl", f"data.path={folder}"])
    found = list(scan.whole_file(Context(cfg, None, dry_run=False)))
    assert len(found) == 1 and "several formats (1 csv, 1 jsonl)" in found[0].why
    with pytest.raises(files.DataError, match="several formats"):
        data.rows(cfg.data)


@pytest.mark.parametrize("name,content,where", [
    ("d.csv", b"question,answer\nq,1\nq2,caf\xe9\n", "line 3"),
    ("d.json", b'[{"question": "q", "answer": "1"},\n {"question": ]', "line 2"),
])
def test_csv_and_json_errors_name_the_line(tmp_path, name, content, where):
    (tmp_path / name).write_bytes(content)
    cfg = compose(["data=jsonl", f"data.path={tmp_path / name}"])
    found = list(scan.whole_file(Context(cfg, None, dry_run=False)))
    assert len(found) == 1 and f"{tmp_path / name}, {where}: " in found[0].why
