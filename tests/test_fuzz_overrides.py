"""Property: whatever overrides a user types, `python -m r1exp dry_run=true ...` ends with exit 0 or 2 and never
shows a Python traceback.

Override sets are drawn like a hostile but fair user would type them: odd numbers (inf, nan, 1e30, -1, huge
integers), odd strings (unicode, quotes, spaces, 300 characters, interpolations), `+`/`++`/`~` prefixes, misspelled
keys, unknown group options. They run in-process through r1exp.__main__.main (a dry run never reaches Hydra's run:
that is asserted). The default suite draws a few sets; `-m slow` draws many more.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import r1exp.__main__ as entry

KEYS = ["trainer.learning_rate", "trainer.max_steps", "trainer.num_generations", "trainer.per_device_train_batch_size",
        "trainer.max_completion_length", "trainer.temperature", "trainer.beta", "seed", "model.max_seq_length",
        "model.lora.r", "data.num_samples", "checks.reward_sanity_samples", "hardware.gpu_memory_gb",
        "engine.gpu_memory_utilization", "engine.max_model_len", "name", "model.name_or_path", "data.path",
        "trainer.loss_type", "logger.mode", "hardware.device", "model.dtype", "checks.reward_time_budget_s",
        "checks.max_reward_failure_rate", "reward.accuracy.weight", "data.system_prompt", "model.warmup.steps",
        "tools.calculator.time_limit_s", "tools.calculator.probe", "trainer.max_tool_calling_iterations",
        "environment.max_checks", "environment._target_", "model.chat_template"]
GROUPS = {"model": ["tiny", "qwen0_5b", "qwen7b", "llama3_8b", "nope", "../config", "tiny/x"],
          "loader": ["peft", "unsloth", "nope"], "engine": ["vllm", "vllm_server", "hf", "nope"],
          "data": ["arithmetic", "countdown", "jsonl", "nope"], "logger": ["wandb", "none", "nope"],
          "experiment": ["open_r1_demo", "nope", "tool_use"], "tools": ["[calculator]", "[calculator,python]", "[nope]",
                                                                      "[]", "calculator"],
          "environment": ["answer_checker", "none", "nope"]}
VALUES = ["0", "-1", "1", "3", "0.5", "1e-5", "1e30", "-1e30", "nan", "inf", "-inf", "99999999999999999999", "''",
          "null", "true", "[1,2]", "{a: 1}", "abc", "é", "'é'", "x y", "a'b", "x" * 300, "${nonexistent}",
          "${oc.env:HOME}", "${oc.env:R1EXP_NO_SUCH_VAR}", "${seed}", "/no/such/file", "./missing.jsonl", "~",
          "\\", "a=b", "[", "}", "%", "${", "1_000"]


def _misspelled(key: str, i: int) -> str:
    i %= len(key)
    return key[:i] + key[i + 1:]


override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.sampled_from([f"{g}={o}" for g, opts in GROUPS.items() for o in opts]),
    st.builds(lambda p, k, v: f"{p}{k}" + ("" if v is None else f"={v}"), st.sampled_from(["+", "++", "~"]),
              st.sampled_from(KEYS + sorted(GROUPS)), st.one_of(st.none(), st.sampled_from(VALUES))),
    st.builds(lambda k, i, v: f"{_misspelled(k, i)}={v}", st.sampled_from(KEYS), st.integers(0, 40),
              st.sampled_from(VALUES)),
)
override_sets = st.lists(override, min_size=1, max_size=3)


def dry_run(overrides: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = entry.main([*overrides, "dry_run=true"])
    return code, out.getvalue()


@pytest.fixture
def no_real_run(monkeypatch, tmp_path):
    """A dry run must never get as far as Hydra running a job; and nothing is written into the repository."""
    def refuse(*args, **kwargs):
        raise AssertionError("a dry run went on to run a job")

    monkeypatch.setattr(entry, "_hydra", refuse)
    monkeypatch.chdir(tmp_path)


def check(overrides: list[str]) -> None:
    code, output = dry_run(overrides)
    assert code in (0, 2), f"exit {code} for {overrides}:\n{output[-3000:]}"
    assert "Traceback (most recent call last)" not in output, f"{overrides}:\n{output[-3000:]}"


FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


@settings(FUZZ, max_examples=4)
@given(override_sets)
def test_any_overrides_exit_0_or_2_without_a_traceback(no_real_run, overrides):
    check(overrides)


@pytest.mark.slow
@settings(FUZZ, max_examples=300, derandomize=False)
@given(override_sets)
def test_many_override_sets_exit_0_or_2_without_a_traceback(no_real_run, overrides):
    check(overrides)


# The classes the issue found, each once (fast: they stop at composition or validation).
@pytest.mark.parametrize("overrides", [
    ["name=é"], ["data.system_prompt=Réponds"], ["model=../config"], ["model=tiny/x"], ["model=nope"],
    ["trainer.learning_rate=${nonexistent}"], ["+trainer.top_p=0.9", "trainer.lr=1"], ["reward=[accuracy,nope]"],
    ["checks.reward_time_budget_s=-1"], ["checks.reward_time_budget_s=abc"],
    ["~hardware.device"], ["logger.mode=xx", "name=inf", "~hardware.device"],   # the resolved run's device
], ids=lambda o: " ".join(o)[:40])
def test_known_classes_exit_0_or_2_without_a_traceback(no_real_run, overrides):
    check(overrides)


@pytest.mark.parametrize("overrides", [["hardware.gpu_memory_gb=inf"], ["~name"], ["~logger"], ["+loader=[1,2]"],
                                       ["seed=-1"], ["trainer.learning_rate=inf"], ["model.warmup.steps=abc"],
                                       ["checks.reward_sanity_samples=99999999999999999999"], ["name=" + "x" * 300]],
                         ids=lambda o: " ".join(o)[:40])
def test_schema_classes_exit_2_without_a_traceback(no_real_run, overrides):
    code, output = dry_run(overrides)
    assert code == 2 and "Traceback (most recent call last)" not in output, output[-3000:]
    check(overrides)
