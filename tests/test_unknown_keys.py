"""Every key of r1exp's own groups is declared (r1exp/config/schema.py): a key nothing reads, such as a typo added
with `+`, is rule schema.key with "did you mean" (exit 2), under data (each option with its own keys), checks,
logger, hardware and the top level. Every shipped option, experiment and sweep config passes.
"""

from __future__ import annotations

import contextlib
import io

import pytest

import r1exp.__main__ as entry
from r1exp import data
from r1exp.config.compose import CONF_DIR, compose
from r1exp.config.schema import GENERATED_DATA, FileData, data_class, schema_problems

SWEEPS = CONF_DIR.parent / "sweeps"

# (overrides, the key reported, words in the message)
UNKNOWN = [
    (["+data.max_prompt_token=4000"], "data.max_prompt_token", "did you mean data.max_prompt_tokens?"),
    (["+data.sytem_prompt=Answer."], "data.sytem_prompt", "did you mean data.system_prompt?"),
    (["+data.max_operands=3"], "data.max_operands", "did you mean data.max_operand"),
    (["data=countdown", "+data.max_numbers=9"], "data.max_numbers", "did you mean data.max_number?"),
    (["data=gsm8k", "+data.keep_field=[x]"], "data.keep_field", "did you mean data.keep_fields"),
    (["data=jsonl", "data.path=org/name", "+data.promt_template=x"], "data.promt_template",
     "did you mean data.prompt_template"),
    (["data=gsm8k", "+data.max_operand=3"], "data.max_operand", "it is a key of data=arithmetic"),
    (["+data.subset=main"], "data.subset", "it is a key of data=gsm8k, data=jsonl"),
    (["+data.count=[2,3]"], "data.count", "it is a key of data=countdown"),
    (["+checks.reward_sanity_sample=8"], "checks.reward_sanity_sample", "did you mean checks.reward_sanity_samples"),
    (["+checks.nope=1"], "checks.nope", "keys under checks: max_reward_failure_rate"),
    (["+logger.projct=x"], "logger.projct", "did you mean logger.project?"),
    (["+logger.api_key=abc123456"], "logger.api_key", "keys under logger:"),
    (["+hardware.gpu_memory=80"], "hardware.gpu_memory", "did you mean hardware.gpu_memory_gb?"),
    (["+nme=x"], "nme", "did you mean name?"),
    (["+dryrun=true"], "dryrun", "did you mean dry_run?"),
    (["+foo=1"], "foo", "keys under the top level: checks, data, distributed, dry_run"),
]


@pytest.mark.parametrize("overrides, key, words", UNKNOWN, ids=[" ".join(u[0])[:50] for u in UNKNOWN])
def test_an_unknown_key_is_refused_with_did_you_mean(overrides, key, words):
    problems = [p for p in schema_problems(compose(overrides)) if p.rule == "schema.key"]
    assert [p.key for p in problems] == [key], [p.render() for p in problems]
    assert words in problems[0].render(), problems[0].render()
    assert "nothing reads it" in problems[0].why


def test_an_unknown_credential_is_not_echoed_and_the_fix_names_the_environment():
    problems = [p for p in schema_problems(compose(["+logger.api_key=sk-fake-0451"])) if p.rule == "schema.key"]
    assert problems[0].value == "<redacted>" and "sk-fake-0451" not in problems[0].render()
    assert "WANDB_API_KEY" in problems[0].fix


def test_a_logger_key_is_accepted_with_logger_none():
    """logger=none has `name` only; the other keys keep their defaults and mean nothing without W&B."""
    assert [p for p in schema_problems(compose(["logger=none"])) if p.rule == "schema.key"] == []


def test_an_unknown_key_exits_2_without_a_traceback():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = entry.main(["+data.max_prompt_token=4000", "dry_run=true", "logger=none"])
    text = out.getvalue()
    assert code == 2, text[-3000:]
    assert "error [schema.key]: data.max_prompt_token = 4000" in text and "did you mean data.max_prompt_tokens?" in text
    assert "Traceback" not in text


# --- what must pass: every shipped option, experiment and sweep config --------------------------------------------

def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


SHIPPED = [[f"{g}={o}"] for g in ("data", "logger", "distributed", "model", "loader", "engine", "experiment")
           for o in options(g)] + [[f"reward=[{o}]"] for o in options("reward")]
KNOWN_GOOD = [
    ["+data.max_prompt_tokens=300"],
    ["data=countdown", "data.count=[2,3]", "data.max_number=9"],
    ["data=jsonl", "data.path=org/name", "data.reasoning_field=solution", "data.prompt_template='Q: {question}'"],
    ["checks.reward_time_budget_s=null"],   # conf/config.yaml: "null: none"
    ["+data.tags.answer=['<SOLUTION>','</SOLUTION>']"],
]


@pytest.mark.parametrize("overrides", SHIPPED + KNOWN_GOOD, ids=lambda o: " ".join(o)[:50])
def test_every_shipped_option_has_only_declared_keys(overrides):
    problems = [p for p in schema_problems(compose(overrides)) if p.rule.startswith("schema")]
    assert problems == [], [p.render() for p in problems]


@pytest.mark.parametrize("sweep", sorted(p.stem for p in SWEEPS.glob("*.yaml")))
def test_every_sweep_config_has_only_declared_keys(sweep):
    """A sweep config is a primary config (`objective` is the Optuna search's: r1exp/scale/sweep.py)."""
    problems = [p for p in schema_problems(compose([], sweep, SWEEPS)) if p.rule.startswith("schema")]
    assert problems == [], [p.render() for p in problems]


def test_each_data_option_has_the_keys_its_code_reads():
    """The classes mirror how r1exp.data picks a source: a generator's name, else a file (any other name)."""
    assert set(GENERATED_DATA) == set(data.GENERATORS)
    for option in options("data"):
        cfg = compose([f"data={option}"])
        cls = data_class({"name": cfg.data.name})
        assert cls is GENERATED_DATA.get(option, FileData)
        assert set(cfg.data) <= set(cls.model_fields), set(cfg.data) - set(cls.model_fields)
    assert data_class({"name": "my_own"}) is FileData and data_class(None) is FileData
