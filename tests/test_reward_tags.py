"""The answer format's tags are data (`data.tags`, r1exp/data/tags.py): the rewards that read tags follow them, the
reward sanity check writes its well-formatted completions in them, malformed tags stop the pre-flight (exit 2) and
a system prompt that does not name them is a warning.

The completions below are written the way Unsloth's GRPO notebooks ask for them: `<start_working_out>...
<end_working_out><SOLUTION>...</SOLUTION>` (Qwen3 / Llama notebooks) and `<reasoning>...</reasoning><answer>...
</answer>` (the older ones).
"""

from __future__ import annotations

import contextlib
import io

import pytest

import r1exp.__main__ as entry
from r1exp.checks.validate import validate
from r1exp.config.compose import compose
from r1exp.data.tags import DEFAULT, Tags
from r1exp.machine.facts import detect
from r1exp.rewards import build_rewards
from r1exp.rewards.correctness import accuracy, exact_match, numeric_match
from r1exp.rewards.countdown import countdown
from r1exp.rewards.length import cosine
from r1exp.rewards.library import SPECS
from r1exp.rewards.rules import library_params
from r1exp.rewards.sanity import check_rewards
from r1exp.rewards.shape import format as format_reward
from r1exp.rewards.shape import reasoning_steps, tag_count

SOLUTION = {"think": ["<start_working_out>", "<end_working_out>"], "answer": ["<SOLUTION>", "</SOLUTION>"]}
REASONING = {"think": ["<reasoning>", "</reasoning>"], "answer": ["<answer>", "</answer>"]}
SOLUTION_OVERRIDE = ("+data.tags={think: ['<start_working_out>','<end_working_out>'], "
                     "answer: ['<SOLUTION>','</SOLUTION>']}")
REASONING_OVERRIDE = "+data.tags.think=['<reasoning>','</reasoning>']"   # the answer pair keeps its default
SOLUTION_PROMPT = ("data.system_prompt='Think between <start_working_out> and <end_working_out>, then give your "
                   "answer between <SOLUTION></SOLUTION>.'")
REASONING_PROMPT = "data.system_prompt='Respond as <reasoning>...</reasoning><answer>...</answer>.'"
HALF = "<start_working_out>Half of 1 is 1 over 2<end_working_out><SOLUTION>\\frac{1}{2}</SOLUTION>"
HALF_REASONING = "<reasoning>Half of 1 is 1 over 2</reasoning><answer>\\frac{1}{2}</answer>"
HERE = detect()


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def score(fn, text: str, tags, **columns) -> float | None:
    return fn([chat(text)], tags=tags, **{k: [v] for k, v in columns.items()})[0]


# --- each reward that reads tags, with Unsloth's tags and with the defaults ---------------------------------------
# (reward, completion, dataset columns, tags, score with those tags, score with the default tags)

ROWS = [
    (format_reward, HALF, {}, SOLUTION, 1.0, 0.0),
    (tag_count, HALF, {}, SOLUTION, 1.0, 0.0),
    # the default accuracy falls back to the last number, the 2 of \frac{1}{2}: wrong
    (accuracy, HALF, {"answer": "0.5"}, SOLUTION, 1.0, 0.0),
    (exact_match, "<start_working_out>x<end_working_out><SOLUTION>Paris</SOLUTION>", {"answer": "paris"},
     SOLUTION, 1.0, 0.0),
    (numeric_match, "<start_working_out>5 + 2 = 7<end_working_out><SOLUTION>7</SOLUTION> (not 8)", {"answer": "7"},
     SOLUTION, 1.0, 0.0),
    (countdown, "<start_working_out>3 * 5 = 15<end_working_out><SOLUTION>3 * 5 + 2</SOLUTION>",
     {"numbers": [3, 5, 2], "target": 17}, SOLUTION, 1.0, 0.0),
    (reasoning_steps, "<start_working_out>Step 1: a.\nStep 2: b.\nStep 3: c.<end_working_out><SOLUTION>1</SOLUTION>",
     {}, SOLUTION, 1.0, 2 / 3),  # the defaults count in the whole text, where "Step 1" does not start a line
    (reasoning_steps, "Step 1: a.\nStep 2: b.\n<start_working_out>I guess.<end_working_out><SOLUTION>1</SOLUTION>",
     {}, SOLUTION, 0.0, 2 / 3),  # steps outside the reasoning block do not count
    (format_reward, HALF_REASONING, {}, REASONING, 1.0, 0.0),
    (tag_count, HALF_REASONING, {}, REASONING, 1.0, 0.5),     # <answer> and </answer> are the defaults' too
    (accuracy, HALF_REASONING, {"answer": "0.5"}, REASONING, 1.0, 1.0),
    (format_reward, "<think>a</think><answer>1</answer>", {}, SOLUTION, 0.0, 1.0),   # the defaults, under other tags
]


@pytest.mark.parametrize("fn, text, columns, tags, with_tags, with_defaults", ROWS,
                         ids=[f"{r[0].__name__}-{i}" for i, r in enumerate(ROWS)])
def test_rewards_score_in_the_tags_they_are_given(fn, text, columns, tags, with_tags, with_defaults):
    assert score(fn, text, tags, **columns) == pytest.approx(with_tags)
    assert score(fn, text, None, **columns) == pytest.approx(with_defaults)
    assert score(fn, text, Tags.of(tags), **columns) == pytest.approx(with_tags)


def test_cosine_reads_the_answer_in_the_tags():
    right = cosine([chat(HALF)], answer=["0.5"], completion_ids=[[0] * 10], max_length=100, tags=SOLUTION)
    wrong = cosine([chat(HALF)], answer=["0.5"], completion_ids=[[0] * 10], max_length=100)
    assert right[0] > 0 > wrong[0]


def test_tags_are_regular_text_not_patterns():
    tags = {"think": ["[think]", "[/think]"], "answer": ["(*)", "(/*)"]}
    assert score(format_reward, "[think]a[/think](*)7(/*)", tags) == 1.0
    assert score(accuracy, "[think]a[/think](*)7(/*) 8", tags, answer="7") == 1.0


def test_a_pair_left_out_keeps_its_default():
    assert Tags.of({"answer": ["<SOLUTION>", "</SOLUTION>"]}) == Tags(DEFAULT.think, ("<SOLUTION>", "</SOLUTION>"))
    assert Tags.of(None) == DEFAULT and Tags.of({}) == DEFAULT
    assert DEFAULT.describe() == "<think>...</think><answer>...</answer>"


# --- one place: data.tags, followed by every reward that reads tags -------------------------------------------------

TAG_READERS = sorted(name for name, spec in SPECS.items() if spec.tags)


def test_every_reward_that_reads_tags_takes_them_and_its_yaml_follows_data_tags():
    assert TAG_READERS == ["accuracy", "cosine", "countdown", "exact", "format", "length", "numeric",
                           "reasoning_steps", "tag_count"]
    for name, spec in SPECS.items():
        assert ("tags" in library_params(spec.fn)) == bool(spec.tags), name
    cfg = compose([SOLUTION_OVERRIDE, f"reward=[{','.join(TAG_READERS)}]"])
    for label in TAG_READERS:
        assert cfg.reward[label].tags == SOLUTION, label
    assert all(compose([f"reward=[{label}]"]).reward[label].tags is None for label in TAG_READERS)   # the defaults


def test_a_reward_can_have_its_own_tags():
    cfg = compose([SOLUTION_OVERRIDE, "reward.format.tags={answer: ['<a>','</a>']}"])
    assert cfg.reward.accuracy.tags == SOLUTION
    funcs, _ = build_rewards(cfg.reward)
    assert funcs[1](completions=[chat("<think>x</think><a>1</a>")]) == [1.0]
    assert funcs[1](completions=[chat(HALF)]) == [0.0]


def test_the_default_data_options_do_not_set_tags():
    """Every key of `data` is in the tiny model's build recipe: the defaults live in code, so the shipped build of
    the default run stays the default run's (tests/test_tiny_shipped.py)."""
    for option in ("arithmetic", "countdown", "gsm8k", "jsonl"):
        assert "tags" not in compose([f"data={option}"]).data, option


# --- the reward sanity check passes with either tag set --------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    [],
    [SOLUTION_OVERRIDE, SOLUTION_PROMPT],
    [REASONING_OVERRIDE, REASONING_PROMPT],
    ["data=countdown", SOLUTION_OVERRIDE, "reward=[countdown,format,tag_count]"],
], ids=["defaults", "solution", "reasoning", "countdown-solution"])
def test_the_reward_sanity_check_passes_with_the_runs_tags(overrides):
    arithmetic = [name for name in TAG_READERS if name != "countdown"]   # countdown needs data=countdown
    readers = [] if any(o.startswith("reward=") for o in overrides) else [f"reward=[{','.join(arithmetic)}]"]
    cfg = compose([*overrides, *readers, "trainer.max_completion_length=256"])
    report = check_rewards(cfg)
    assert report.problems == [], [p.render() for p in report.problems]
    assert len(report.verdicts) >= 3


def test_the_sanity_check_catches_a_reward_that_looks_for_other_tags_than_the_data():
    cfg = compose([SOLUTION_OVERRIDE, "+reward.plain={name: format}"])   # no `tags`: the function's defaults
    problems = check_rewards(cfg).problems
    assert [p.key for p in problems] == ["reward.plain"]
    assert "<start_working_out>...<end_working_out><SOLUTION>...</SOLUTION>" in problems[0].why


def test_the_dry_run_passes_with_unsloths_tags():
    code, output = dry_run([SOLUTION_OVERRIDE, SOLUTION_PROMPT, "reward=[accuracy,format,tag_count]"])
    assert code == 0, output[-3000:]
    assert "ok      tag_count" in output and "<SOLUTION>...</SOLUTION> preferred" in output


# --- malformed tags stop the pre-flight; a prompt that does not name them warns -----------------------------------
# (overrides, rule, key, words in the message)

MALFORMED = [
    (["+data.tags.answer=['','</SOLUTION>']"], "data.tags", "data.tags.answer", "empty tag"),
    (["+data.tags.answer=['  ','</SOLUTION>']"], "data.tags", "data.tags.answer", "empty tag"),
    (["+data.tags.answer=['<S>','<S>']"], "data.tags", "data.tags.answer", "the same"),
    (["+data.tags.answer=['<think>','</think>']"], "data.tags", "data.tags", "the answer cannot be told"),
    (["+data.tags.answer=['</think>','</answer>']"], "data.tags", "data.tags", "both a reasoning and an answer tag"),
    (["+data.tags.answer=['<S>']"], "data.tags", "data.tags.answer", "[open, close]"),
    (["+data.tags.answer=['<a>','<b>','<c>']"], "data.tags", "data.tags.answer", "[open, close]"),
    (["+data.tags.answer=SOLUTION"], "data.tags", "data.tags.answer", "[open, close]"),
    (["+data.tags.solution=['<S>','</S>']"], "data.tags", "data.tags.solution", "data.tags.think and data.tags.answer"),
    (["+data.tags=5"], "data.tags", "data.tags", "a mapping"),
    (["reward.format.tags={think: ['<r>','<r>']}"], "reward.tags", "reward.format.tags.think", "the same"),
    (["reward.accuracy.tags={answer: ['','</a>']}"], "reward.tags", "reward.accuracy.tags.answer", "empty tag"),
]


@pytest.mark.parametrize("overrides, rule, key, words", MALFORMED, ids=[" ".join(m[0])[:50] for m in MALFORMED])
def test_malformed_tags_are_refused_with_a_fix(overrides, rule, key, words):
    problems = [p for p in validate(compose(overrides), HERE, dry_run=True) if p.rule == rule]
    assert [(p.key, p.severity) for p in problems] == [(key, "error")], [p.render() for p in problems]
    assert words in problems[0].render() and problems[0].fix


def test_malformed_tags_exit_2_without_a_traceback():
    code, output = dry_run(["+data.tags.answer=['<S>','<S>']"])
    assert code == 2 and "error [data.tags]" in output and "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("overrides, missing", [
    ([SOLUTION_OVERRIDE], "<start_working_out>, <end_working_out>, <SOLUTION>, </SOLUTION>"),
    ([REASONING_OVERRIDE, "reward=[accuracy]"], None),     # accuracy reads <answer> only, which the prompt names
    ([REASONING_OVERRIDE], "<reasoning>, </reasoning>"),
    (["reward.format.tags={answer: ['<SOLUTION>','</SOLUTION>']}"], "<SOLUTION>, </SOLUTION>"),
    (["data.system_prompt='Answer with a number.'"], "<think>, </think>, <answer>, </answer>"),
    ([SOLUTION_OVERRIDE, SOLUTION_PROMPT], None),
    ([REASONING_OVERRIDE, REASONING_PROMPT], None),
    (["data.system_prompt=null"], None),                    # no prompt: nothing to compare
    (["reward=[repetition]", "data.system_prompt='Answer.'"], None),   # no reward reads tags
    ([], None),
], ids=lambda v: str(v)[:40])
def test_a_system_prompt_that_does_not_name_the_rewards_tags_warns(overrides, missing):
    problems = [p for p in validate(compose(overrides), HERE, dry_run=True) if p.rule == "reward.prompt_tags"]
    if missing is None:
        assert problems == [], [p.render() for p in problems]
        return
    assert [(p.key, p.severity) for p in problems] == [("data.system_prompt", "warning")]
    assert f"it does not name {missing}," in problems[0].why, problems[0].why


def test_the_tiny_models_warm_up_knows_the_default_tags_only():
    problems = [p for p in validate(compose([SOLUTION_OVERRIDE]), HERE, dry_run=True) if p.rule == "data.tags_warmup"]
    assert [p.severity for p in problems] == ["warning"] and "r1exp/models/tiny.py" in problems[0].why
    assert not [p for p in validate(compose([SOLUTION_OVERRIDE, "model=qwen0_5b", "hardware.gpu_memory_gb=80"]), HERE,
                                    dry_run=True) if p.rule == "data.tags_warmup"]


def dry_run(overrides: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = entry.main([*overrides, "dry_run=true", "logger=none"])
    return code, out.getvalue()
