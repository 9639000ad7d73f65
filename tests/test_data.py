"""Data: generated tasks are seeded and solvable; files and hub-style folders map to the same rows; GSM8K's
'#### answer' is parsed; a field that is not in the file is reported before the run. Files are written in tmp."""

from __future__ import annotations

import csv
import json

import pytest

from r1exp import data
from r1exp.config.compose import compose
from r1exp.machine.facts import detect
from r1exp.checks.validate import validate
from r1exp.data.gsm8k import split_answer
from r1exp.rewards.countdown import countdown

SYSTEM = "Think, then answer as <think>...</think><answer>...</answer>."
RECORDS = [
    {"problem": "What is 2 + 2?", "solution": "4", "source": "a"},
    {"problem": "What is 3 * 3?", "solution": "9", "source": "b"},
    {"problem": "What is 10 - 7?", "solution": "3", "source": "c"},
]


def write(path, records, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "json":
        path.write_text(json.dumps(records))
    elif fmt == "csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def file_cfg(path, *more):
    return compose(["data=jsonl", f"data.path={path}", "data.prompt_field=problem", "data.answer_field=solution",
                    *more]).data


# --- generated tasks ---------------------------------------------------------------------------------------------

def test_arithmetic_rows_are_the_default_run_rows():
    cfg = compose([]).data
    rows = data.rows(cfg, 3)
    examples = data.arithmetic.generate(cfg, 3, cfg.seed)
    assert rows == [{"prompt": [{"role": "system", "content": cfg.system_prompt},
                                {"role": "user", "content": ex.question}], "answer": ex.answer} for ex in examples]
    assert len(data.rows(cfg)) == cfg.num_samples == 2000


@pytest.mark.parametrize("name", ["arithmetic", "countdown"])
def test_generated_data_is_seeded(name):
    cfg = compose([f"data={name}"]).data
    assert data.examples(cfg, 20, seed=1) == data.examples(cfg, 20, seed=1)
    assert data.examples(cfg, 20, seed=1) != data.examples(cfg, 20, seed=2)


def test_countdown_tasks_are_solved_by_their_gold_equation():
    cfg = compose(["data=countdown"]).data
    rows = data.rows(cfg, 200)
    scores = countdown(completions=[f"<answer>{r['answer']}</answer>" for r in rows],
                       numbers=[r["numbers"] for r in rows], target=[r["target"] for r in rows])
    assert scores == [1.0] * 200
    assert all(3 <= len(r["numbers"]) <= 4 and 1 <= r["target"] <= 100 for r in rows)
    assert all(str(r["numbers"]) in r["prompt"][-1]["content"] for r in rows)


def test_countdown_uses_only_the_configured_operations():
    cfg = compose(["data=countdown", "data.operations=[+]"]).data
    assert all(set(r["answer"]) <= set("0123456789+() ") for r in data.rows(cfg, 50))


# --- GSM8K answers -----------------------------------------------------------------------------------------------

GSM8K_ANSWERS = [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", ("Natalia sold 48/2 = 24 clips in May.", "72")),
    ("It costs 1,000 + 200 = <<1000+200=1200>>1,200.\n#### 1,200", ("It costs 1,000 + 200 = 1,200.", "1200")),
    ("#### -3", ("", "-3")),
    ("42", ("", "42")),                              # no '####': the whole text is the answer
]


@pytest.mark.parametrize("text,expected", GSM8K_ANSWERS)
def test_gsm8k_answer_is_the_number_after_the_hashes(text, expected):
    assert split_answer(text) == expected


def test_gsm8k_from_a_local_file(tmp_path):
    path = write(tmp_path / "gsm8k.jsonl", [{"question": "Q1?", "answer": "Half of 4 is <<4/2=2>>2.\n#### 2"},
                                            {"question": "Q2?", "answer": "#### 1,000"}], "jsonl")
    cfg = compose(["data=gsm8k", f"data.path={path}"]).data
    assert data.examples(cfg) == [data.Example("Q1?", "2", "Half of 4 is 2."), data.Example("Q2?", "1000", "")]
    assert data.rows(cfg)[0]["prompt"][-1] == {"role": "user", "content": "Q1?"}


# --- any file: one row shape -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_local_files_map_to_the_same_rows(tmp_path, fmt):
    cfg = file_cfg(write(tmp_path / f"train.{fmt}", RECORDS, fmt), "data.keep_fields=[source]", "data.num_samples=2")
    assert data.rows(cfg) == [
        {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 2 + 2?"}],
         "answer": "4", "source": "a"},
        {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 3 * 3?"}],
         "answer": "9", "source": "b"},
    ]
    assert data.columns_of(cfg) == ("answer", "source") and data.is_local(cfg)


def test_json_may_hold_records_under_the_split(tmp_path):
    path = tmp_path / "all.json"
    path.write_text(json.dumps({"train": RECORDS, "test": RECORDS[:1]}))
    assert [r["answer"] for r in data.rows(file_cfg(path, "data.split=test"))] == ["4"]


def test_prompt_template_system_prompt_and_reasoning(tmp_path):
    path = write(tmp_path / "t.jsonl", [{**r, "work": "by hand"} for r in RECORDS], "jsonl")
    cfg = file_cfg(path, "data.prompt_template='Solve: {problem} ({source})'", "data.system_prompt=null",
                   "data.reasoning_field=work")
    ex = data.examples(cfg, 1)[0]
    assert (ex.question, ex.answer, ex.reasoning) == ("Solve: What is 2 + 2? (a)", "4", "by hand")
    assert data.rows(cfg, 1)[0]["prompt"] == [{"role": "user", "content": "Solve: What is 2 + 2? (a)"}]


def test_a_prompt_field_holding_chat_messages_is_kept(tmp_path):
    chat = [{"role": "user", "content": "What is 2 + 2?"}]
    path = write(tmp_path / "chat.jsonl", [{"prompt": chat, "solution": "4"}], "jsonl")
    cfg = compose(["data=jsonl", f"data.path={path}", "data.prompt_field=prompt", "data.answer_field=solution"]).data
    assert data.rows(cfg)[0]["prompt"] == [{"role": "system", "content": SYSTEM}, *chat]
    assert data.examples(cfg)[0].question == "What is 2 + 2?"


def test_a_folder_goes_through_datasets_like_a_hub_dataset(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write(folder / "train.jsonl", RECORDS, "jsonl")
    cfg = file_cfg(folder, "data.keep_fields=[source]")
    assert [r["answer"] for r in data.rows(cfg)] == ["4", "9", "3"]
    dataset = data.build_dataset(cfg)
    assert sorted(dataset.column_names) == ["answer", "prompt", "source"] and len(dataset) == 3


def test_build_dataset_has_the_reward_columns():
    dataset = data.build_dataset(compose(["data=countdown", "data.num_samples=8"]).data)
    assert sorted(dataset.column_names) == ["answer", "numbers", "prompt", "target"] and len(dataset) == 8


def test_a_missing_field_names_the_fields_there_are(tmp_path):
    cfg = file_cfg(write(tmp_path / "t.jsonl", RECORDS, "jsonl"), "data.answer_field=answer")
    with pytest.raises(data.FieldError, match=r"no field 'answer'; its fields are \['problem', 'solution', 'source'\]"):
        data.examples(cfg)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_validation_reports_fields_the_file_does_not_have(tmp_path, fmt):
    path = write(tmp_path / f"t.{fmt}", RECORDS, fmt)
    cfg = compose(["data=jsonl", f"data.path={path}", "data.prompt_field=question", "data.keep_fields=[level]"])
    problems = {p.key: p for p in validate(cfg, detect()) if p.rule == "data.source"}
    assert set(problems) == {"data.prompt_field", "data.answer_field", "data.keep_fields[0]"}
    assert "its fields are problem, solution, source" in problems["data.prompt_field"].render()


SOURCES = [  # (overrides, generated, local, columns)
    ([], True, True, ("answer",)),
    (["data=countdown"], True, True, ("answer", "numbers", "target")),
    (["data=gsm8k"], False, False, ("answer",)),
    (["data=jsonl", "data.path=org/name", "data.keep_fields=[solution]"], False, False, ("answer", "solution")),
]


@pytest.mark.parametrize("overrides,generated,local,columns", SOURCES)
def test_sources_say_what_they_are(overrides, generated, local, columns):
    cfg = compose(overrides).data
    assert (data.is_generated(cfg), data.is_local(cfg), data.columns_of(cfg)) == (generated, local, columns)
