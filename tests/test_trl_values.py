"""trainer.* values against the installed TRL: enumerations with "did you mean", deprecated fields with their
replacement, and TRL's own checks of value combinations, all read from TRL's source (r1exp.grpo.source) and
compared here with what the installed TRL itself says at run time, so that a TRL upgrade cannot make them stale
silently."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from r1exp.config.compose import compose
from r1exp.checks.validate import validate
from r1exp.errors import errors_of
from r1exp.machine.facts import detect
from r1exp.grpo.fields import grpo_fields

HERE = detect()
trl = pytest.importorskip("trl")
TRL_FIELDS = {f.name: f for f in dataclasses.fields(trl.GRPOConfig)}
# String fields TRL checks against a fixed set of values (where: GRPOTrainer's if/elif ... else: raise chains).
ENUMS = ("loss_type", "importance_sampling_level", "scale_rewards", "vllm_importance_sampling_mode",
         "multi_objective_aggregation", "lr_scheduler_type")


def found(overrides: list[str], rule: str) -> list:
    return [p for p in validate(compose(["logger=none", *overrides]), HERE, dry_run=True) if p.rule == rule]


BASE = compose(["logger=none"])


def found_with(rule: str, **trainer) -> list:
    """The problems of `rule` for the default config with these trainer.* values (set, as `+trainer.k=v` would)."""
    from omegaconf import OmegaConf

    cfg = BASE.copy()
    for key, value in trainer.items():
        OmegaConf.update(cfg, f"trainer.{key}", value, force_add=True)
    return [p for p in validate(cfg, HERE, dry_run=True) if p.rule == rule]


def trl_default(name: str):
    f = TRL_FIELDS[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


@pytest.mark.parametrize("name", ENUMS)
def test_each_enum_has_the_values_the_installed_trl_names(name):
    choices = grpo_fields().fields[name].choices
    assert len(choices) >= 2, name
    default = trl_default(name)
    assert str(getattr(default, "value", default)) in choices   # TRL's own default is accepted
    if name == "lr_scheduler_type":   # a transformers enum
        from transformers.trainer_utils import SchedulerType

        assert set(choices) == {e.value for e in SchedulerType}
    else:                             # every value is one TRL's help text documents
        help_text = TRL_FIELDS[name].metadata["help"]
        assert all(c in help_text for c in choices), (name, choices)


@pytest.mark.parametrize("name", ENUMS)
def test_every_accepted_value_passes_and_a_near_miss_gets_did_you_mean(name):
    choices = grpo_fields().fields[name].choices
    for value in choices:
        assert found_with("trainer.type", **{name: value}) == [], value
    near = choices[0][:-1] + ("x" if choices[0][-1] != "x" else "y")
    [p] = found_with("trainer.type", **{name: near})
    assert p.severity == "error" and f"did you mean trainer.{name}={choices[0]}" in p.fix, p.fix


def test_a_loss_type_trl_does_not_know_fails_the_dry_run(capsys):
    from r1exp.__main__ import main

    assert main(["logger=none", "dry_run=true", "trainer.loss_type=not_a_loss"]) == 2
    text = capsys.readouterr().err
    assert "error [trainer.type]: trainer.loss_type = 'not_a_loss'" in text and "did you mean" in text
    assert "dapo" in text and "Traceback" not in text


def test_scale_rewards_takes_true_and_false_as_trl_does():
    assert found_with("trainer.type", scale_rewards=False) == []  # GRPOConfig maps False to "none"


def test_deprecated_fields_warn_with_the_replacement_the_installed_trl_names(tmp_path):
    deprecated = {n: f for n, f in grpo_fields().fields.items() if f.deprecated}
    assert "vllm_importance_sampling_cap" in deprecated   # TRL 1.6 .. 2.0
    for name, spec in deprecated.items():
        assert name in TRL_FIELDS and (not spec.replacement or spec.replacement in TRL_FIELDS), name
    spec = deprecated["vllm_importance_sampling_cap"]
    with warnings.catch_warnings(record=True) as caught:   # what TRL itself says when it is used
        warnings.simplefilter("always")
        config = trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                                vllm_importance_sampling_cap=2.5)
    said = " ".join(str(w.message) for w in caught if issubclass(w.category, FutureWarning))
    assert "vllm_importance_sampling_cap" in said and spec.replacement in said
    assert config.vllm_importance_sampling_clip_max == 2.5 and spec.replacement == "vllm_importance_sampling_clip_max"
    [p] = found(["+trainer.vllm_importance_sampling_cap=2.5"], "trainer.deprecated")
    assert p.severity == "warning" and p.fix == "use trainer.vllm_importance_sampling_clip_max=2.5 instead of " \
                                                "trainer.vllm_importance_sampling_cap"
    assert found(["+trainer.vllm_importance_sampling_clip_max=2.5"], "trainer.deprecated") == []


# TRL's own errors about value combinations in GRPOConfig.__post_init__: r1exp reports them iff TRL raises.
POST_INIT = [
    {"log_completions_hub_repo": "me/completions", "log_completions": False},
    {"log_completions_hub_repo": "me/completions", "log_completions": True},
    {"vllm_importance_sampling_clip_min": 3.0, "vllm_importance_sampling_clip_max": 2.0},
    {"vllm_importance_sampling_clip_min": 0.5, "vllm_importance_sampling_clip_max": 2.0},
    {"vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_clip_max": None},
    {"vllm_importance_sampling_mode": "token_mask", "vllm_importance_sampling_clip_max": None},
    {"auto_find_batch_size": True},
]


@pytest.mark.parametrize("values", POST_INIT, ids=[str(v) for v in POST_INIT])
def test_trls_own_value_checks_agree_with_the_installed_grpo_config(values, tmp_path):
    ours = errors_of(found_with("trainer.trl_checks", **values))
    try:
        trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **values)
        theirs = None
    except ValueError as e:
        theirs = str(e)
    assert bool(ours) == bool(theirs), f"r1exp: {ours}; TRL: {theirs}"
    if theirs:
        assert theirs.split(".")[0][:40] in ours[0].why


def test_trls_warnings_about_combinations_are_repeated_before_the_build():
    [p] = found(["trainer.loss_type=luspo"], "plausible.trl_warnings")
    assert p.severity == "warning" and "importance_sampling_level" in p.why and "grpo_trainer.py" in p.why
    assert found(["trainer.loss_type=luspo", "+trainer.importance_sampling_level=sequence"],
                 "plausible.trl_warnings") == []
    [p] = found(["+trainer.sync_ref_model=true"], "trainer.trl_checks")   # beta=0.0: no reference model
    assert p.severity == "error" and p.key == "trainer.sync_ref_model"
