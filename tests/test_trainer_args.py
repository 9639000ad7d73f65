"""A run trains with the GRPOConfig its config says, whichever loader builds it (r1exp/grpo/args.py).

Unsloth replaces TRL's GRPOConfig with its own class, whose defaults differ from TRL's. Unsloth does not import
without a GPU, so its class is executed here from the trainer it generated on an H200 (the excerpt
tests/fixtures/unsloth_grpo_trainer.py), over the installed TRL's GRPOConfig; the helper Unsloth uses to drop arguments
an installed TRL does not know is replaced by the same filter. The specification:
- left alone, Unsloth's class trains r1exp's config differently from TRL's (8-bit AdamW, weight decay, warm-up, no
  importance-sampling correction, truncated completions masked out, epsilon_high 0.28);
- built by r1exp, every TRL field equals TRL's own class built from the same keys, except the fields the loader owns
  (each with its reason), and run.json's report says what was pinned;
- a value the config sets and Unsloth's class changes anyway stops the run with the loader's value in the fix;
- TRL's own class is built as it is.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import typing
from pathlib import Path

import pytest
import trl

from r1exp.grpo import args as trainer_args
from r1exp.config.compose import compose
from r1exp.errors import ConfigError
from r1exp.loaders.unsloth_loader import UnslothLoader

GENERATED = Path(__file__).resolve().parent / "fixtures" / "unsloth_grpo_trainer.py"
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu"
OWNED = UnslothLoader.own_trainer_fields
TRL_CONFIG = trl.GRPOConfig


@pytest.fixture(scope="module")
def unsloth_config():
    """UnslothGRPOConfig as Unsloth 2026.10.5 generated it."""
    tree = ast.parse(GENERATED.read_text())
    node = next(n for n in tree.body if getattr(n, "name", None) == "UnslothGRPOConfig")
    trl_fields = {f.name for f in dataclasses.fields(TRL_CONFIG)}
    namespace = {
        "GRPOConfig": TRL_CONFIG, "os": os, "Any": typing.Any, "Optional": typing.Optional,
        "dataclass": dataclasses.dataclass, "field": dataclasses.field, "__name__": __name__,
        "_unsloth_filter_config_init_kwargs": lambda cls, kwargs, **_: {k: v for k, v in kwargs.items()
                                                                          if k in trl_fields},
    }
    exec(compile(ast.Module([node], type_ignores=[]), str(GENERATED), "exec"), namespace)
    unsloth = namespace["UnslothGRPOConfig"]
    # and what Unsloth's patch does to it (`_patch_config_pickle_identity`, unsloth/models/rl.py): TRL's module and
    # name, so that its instances pickle as TRL's class. On the H200 r1exp took it for TRL's own by that name and
    # pinned nothing (bench/results/gpu/vllm_text/0.5b_and_7b: run.json without trainer_args, loss 0).
    unsloth.__module__, unsloth.__qualname__, unsloth.__name__ = TRL_CONFIG.__module__, "GRPOConfig", "GRPOConfig"
    return unsloth


def run_args(tmp_path, monkeypatch, config_class, *overrides):
    """(args, report, keys) as r1exp.build.grpo_config builds them for loader=unsloth engine=vllm with `config_class`
    as trl.GRPOConfig (what importing Unsloth makes it); keys: what r1exp passed."""
    from r1exp.build import grpo_config
    from r1exp.components import resolve

    cfg = compose(["loader=unsloth", "engine=vllm", "hardware.device=cpu", *overrides])
    passed = {}

    def recording(config_class, kwargs, owned, **named):
        passed.update(kwargs)
        return built(config_class, kwargs, owned, **named)

    built = trainer_args.build
    monkeypatch.setattr(trl, "GRPOConfig", config_class)
    monkeypatch.setattr(trainer_args, "build", recording)
    args, report = grpo_config(resolve(cfg), tmp_path, "none", [1.0] * len(cfg.reward))
    return args, report, passed


def test_left_alone_unsloths_class_trains_another_objective(unsloth_config, tmp_path, monkeypatch):
    _, _, keys = run_args(tmp_path, monkeypatch, unsloth_config)
    unsloth, trl_args = unsloth_config(**keys), TRL_CONFIG(**keys)
    changed = trainer_args.differences(unsloth, trl_args, OWNED)
    for name in ("optim", "weight_decay", "warmup_steps", "vllm_importance_sampling_correction",
                 "mask_truncated_completions", "epsilon_high"):
        assert name in changed, name
    assert changed["mask_truncated_completions"] == (True, False)


@pytest.mark.parametrize("overrides", [
    (), ("trainer.loss_type=grpo",), ("trainer.loss_type=bnpo", "trainer.beta=0.04"),
    ("trainer.loss_type=cispo",), ("+trainer.mask_truncated_completions=true",), ("+trainer.epsilon_high=0.3",),
    ("+trainer.optim=adamw_torch", "+trainer.weight_decay=0.1"),
])
def test_built_by_r1exp_it_trains_what_trls_class_would(unsloth_config, tmp_path, monkeypatch, overrides):
    args, report, keys = run_args(tmp_path, monkeypatch, unsloth_config, *overrides)
    reference = TRL_CONFIG(**keys)
    assert type(args) is unsloth_config
    assert trainer_args.differences(args, reference, OWNED) == {}
    assert set(report["loader_kept"]) <= set(OWNED)
    assert not set(report["pinned"]) & set(keys)            # only what the config left out
    for name, values in report["pinned"].items():
        assert values["trl"] == trainer_args.printable(trainer_args.value(reference, name)), name


def test_the_report_names_what_was_pinned(unsloth_config, tmp_path, monkeypatch):
    args, report, _ = run_args(tmp_path, monkeypatch, unsloth_config)
    assert args.top_k == -1 and "top_k" not in report["pinned"]      # vLLM's spelling of TRL's "no top-k" (0)
    assert report["pinned"]["optim"] == {"loader": "adamw_8bit", "trl": "adamw_torch_fused"}
    assert report["pinned"]["vllm_importance_sampling_correction"] == {"loader": False, "trl": True}
    assert "bf16" in report["loader_kept"]


@pytest.mark.parametrize("overrides, field", [
    (("trainer.loss_type=dr_grpo", "+trainer.scale_rewards=group"), "scale_rewards"),   # Dr GRPO: Unsloth forces false
    (("trainer.loss_type=dr_grpo",), "scale_rewards"),        # TRL's default, pinned, and forced all the same
])
def test_a_value_unsloths_class_changes_anyway_stops_the_run(unsloth_config, tmp_path, monkeypatch, overrides, field):
    with pytest.raises(ConfigError) as raised:
        run_args(tmp_path, monkeypatch, unsloth_config, *overrides)
    problem = next(p for p in raised.value.problems if p.key == f"trainer.{field}")
    assert "loader=unsloth's GRPOConfig" in problem.why and problem.fix.startswith(f"set trainer.{field}=")


def test_trls_class_is_told_from_a_loaders_class_that_took_its_name(unsloth_config):
    assert unsloth_config.__name__ == TRL_CONFIG.__name__ and unsloth_config.__module__ == TRL_CONFIG.__module__
    assert trainer_args.defined_by_trl(TRL_CONFIG) and not trainer_args.defined_by_trl(unsloth_config)
    assert trainer_args.trl_config_class(unsloth_config) is TRL_CONFIG
    assert trainer_args.trl_config_class(TRL_CONFIG) is TRL_CONFIG


def test_trls_own_class_is_built_as_it_is(tmp_path, monkeypatch):
    args, report, keys = run_args(tmp_path, monkeypatch, TRL_CONFIG)
    assert report == {} and args.to_dict() == TRL_CONFIG(**keys).to_dict()


def test_on_the_h200_unsloth_trained_only_once_trls_defaults_were_pinned():
    """Every Unsloth run committed from the H200 whose run.json has no `trainer_args` (every one before r1exp pinned
    TRL's defaults, the last of them bench/results/gpu/vllm_text/0.5b_and_7b, where Unsloth's class carried TRL's name
    and r1exp took it for TRL's) trained with Unsloth's defaults: at these random-weight shapes every completion runs to
    max_completion_length, and Unsloth's class, given loss_type=dapo, masks truncated completions out of the loss, so
    the loss had no token (Unsloth's completion_length metric 0) and loss and gradient norm were 0, though rewards
    varied; a step with a loss would be one in which a completion ended (none did in these runs). loader=peft on the
    same config, in the same calls, trained. With TRL's defaults pinned (bench/results/gpu/unsloth_trainer_args/pinned:
    0.5B and 7B, and every Unsloth run since) every Unsloth step trained on all 256 tokens of every completion, with
    TRL's importance-sampling correction (its sampling/* metrics) and pi_old from the loss's forward."""
    import json

    from r1exp.records.metrics import read_metrics

    results = RESULTS

    def steps(folder):
        return [r for r in read_metrics(folder) if "loss" in r]

    manifests = {path.parent: json.loads(path.read_text()) for path in results.rglob("run.json")
                 if (path.parent / "metrics.jsonl").exists()}
    unsloth = {folder: m for folder, m in manifests.items() if m["config"]["loader"]["name"] == "unsloth"}
    as_it_came = [r for folder, m in unsloth.items() if not m.get("trainer_args") for r in steps(folder)]
    assert len(as_it_came) > 100 and any(r["reward_std"] > 0 for r in as_it_came)   # advantages were not all zero
    trained = [r for r in as_it_came if r["loss"] != 0 or r["grad_norm"] != 0]
    ended = [r for r in as_it_came if r["completions/clipped_ratio"] < 1.0]
    assert trained == ended
    side_by_side = results / "vllm_text/0.5b_and_7b/runs"
    peft = steps(side_by_side / "q7_peft") + steps(side_by_side / "q05_peft_text") + \
        steps(results / "logprob_reuse/unsloth_7b/runs/q7_peft")
    assert min(r["completions/clipped_ratio"] for r in peft) > 0.95 and all(r["grad_norm"] > 0 for r in peft)
    for run in ("q7_unsloth", "q05_unsloth", "q05_unsloth_text"):
        assert not unsloth[side_by_side / run].get("trainer_args"), run
        assert all(r["completion_length"] == 0 for r in steps(side_by_side / run)), run

    pinned = {folder: m for folder, m in unsloth.items() if m.get("trainer_args")
              and m["config"]["trainer"]["max_completion_length"] == 256}   # the 64 x 256 runs of these claims (the
                                                                            # published_memory runs are memory's)
    assert {f"{f.parent.parent.name}/{f.name}" for f in pinned} >= {"pinned/q05_unsloth", "pinned/q7_unsloth"}
    for folder, manifest in pinned.items():
        assert {"mask_truncated_completions", "optim", "vllm_importance_sampling_correction",
                "epsilon_high"} <= set(manifest["trainer_args"]["pinned"]), folder
        assert manifest["old_logprobs"]["source"] == "training forward", folder
        rows = steps(folder)
        assert len(rows) == manifest["config"]["trainer"]["max_steps"], folder                # every step it took
        assert all(r["completions/clipped_ratio"] == 1.0 for r in rows)                      # all truncated, yet:
        assert all(r["grad_norm"] > 0 and r["completion_length"] == 256 for r in rows), folder
        assert all("sampling/sampling_logp_difference/mean" in r for r in rows), folder


@pytest.mark.parametrize("overrides", [
    ["+trainer.use_vllm=true"],                            # engine=vllm: TRL's use_vllm is true anyway
    ["+trainer.vllm_mode=colocate"],
    ["logger=none", "+trainer.report_to=none"],
])
def test_a_derived_key_that_agrees_with_r1exp_is_kept_with_a_warning(overrides):
    """A recipe copied from TRL says use_vllm: true; with engine=vllm that is what r1exp passes: a warning, not a
    refusal (a value that disagrees is an error: tests/test_validate.py)."""
    from r1exp.checks.validate import validate
    from r1exp.config.compose import compose
    from r1exp.machine.facts import detect

    found = [p for p in validate(compose(overrides), detect(), dry_run=True) if p.rule == "trainer.derived_key"]
    assert [p.severity for p in found] == ["warning"] and "as you say: kept" in found[0].why
