"""Plausibility warnings: settings that run but are unlikely to be meant (the anchors' ranges, r1exp.checks.plausibility).
Warnings only: a dry run with them still exits 0. The tiny demo and every shipped preset raise none."""

from __future__ import annotations

import pytest

from r1exp.config.compose import CONF_DIR, compose
from r1exp.checks.validate import validate
from r1exp.machine.facts import detect

HERE = detect()
H200 = ["hardware.gpu_memory_gb=141"]   # plan real models for a GPU box (the warnings do not depend on it)


def plausibility(overrides: list[str]) -> list:
    return [p for p in validate(compose(["logger=none", *overrides]), HERE, dry_run=True)
            if p.rule.startswith("plausible.")]


WARN = [  # (overrides, the rule that warns, the key it names)
    (["model=qwen7b", "trainer.learning_rate=1e-3"], "plausible.learning_rate", "trainer.learning_rate"),
    (["model=qwen0_5b", "trainer.learning_rate=1e-3"], "plausible.learning_rate", "trainer.learning_rate"),
    (["model=qwen7b", "trainer.learning_rate=1e-8"], "plausible.learning_rate", "trainer.learning_rate"),
    (["model=qwen7b", "trainer.max_completion_length=64"], "plausible.completion_budget",
     "trainer.max_completion_length"),
    (["model=qwen1_5b", "reward=[accuracy,tag_count]", "trainer.max_completion_length=100"],
     "plausible.completion_budget", "trainer.max_completion_length"),
    (["trainer.num_generations=2", "trainer.per_device_train_batch_size=8"], "plausible.num_generations",
     "trainer.num_generations"),
    (["model=qwen7b", "trainer.num_generations=3", "trainer.per_device_train_batch_size=9"],
     "plausible.num_generations", "trainer.num_generations"),
    (["trainer.beta=0.5"], "plausible.beta", "trainer.beta"),
    (["trainer.temperature=0.2"], "plausible.temperature", "trainer.temperature"),
    (["trainer.temperature=1e30"], "plausible.temperature", "trainer.temperature"),
    (["trainer.loss_type=luspo"], "plausible.trl_warnings", "trainer.loss_type"),
    (["+trainer.importance_sampling_level=sequence"], "plausible.trl_warnings", "trainer.importance_sampling_level"),
]


@pytest.mark.parametrize("overrides,rule,key", WARN, ids=[" ".join(w[0]) for w in WARN])
def test_an_implausible_setting_warns_with_why_and_fix(overrides, rule, key):
    found = [p for p in plausibility(overrides + H200) if p.rule == rule]
    assert [(p.key, p.severity) for p in found] == [(key, "warning")], found
    assert found[0].why and found[0].fix


QUIET = [
    [],                                                                  # the tiny demo: lr 1e-3, 24 tokens
    ["trainer.learning_rate=5e-3", "trainer.max_completion_length=16"],  # no anchors at 0.6M parameters
    ["model=qwen7b", "reward=[accuracy]", "trainer.max_completion_length=64"],   # no reasoning format asked for
    ["model=qwen7b", "model.init=random", "trainer.learning_rate=1e-5"],
    ["trainer.num_generations=4", "trainer.per_device_train_batch_size=8"],
    ["trainer.beta=0.04", "trainer.temperature=0.7"],
    ["trainer.loss_type=grpo", "+trainer.importance_sampling_level=sequence"],   # GSPO as TRL advises
] + [[f"model={p.stem}"] for p in sorted((CONF_DIR / "preset").glob("*.yaml"))]  # every preset is plausible


@pytest.mark.parametrize("overrides", QUIET, ids=[" ".join(q) or "default" for q in QUIET])
def test_sensible_settings_and_every_preset_raise_no_warning(overrides):
    assert plausibility(overrides + (H200 if any(o.startswith("model=") for o in overrides) else [])) == []


def test_a_plausibility_warning_never_stops_a_dry_run(capsys):
    from r1exp.__main__ import main

    assert main(["logger=none", "dry_run=true", "trainer.beta=0.5"]) == 0
    assert "warning [plausible.beta]: trainer.beta = 0.5" in capsys.readouterr().out
