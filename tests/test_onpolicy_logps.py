"""On-policy, the old log-probs of TRL's vLLM importance-sampling correction are the loss forward's own
(r1exp/patches/trl_on_policy.py, loader.reuse_training_logps).

The specification, on a real TRL GRPOTrainer (tiny model, float32, CPU):
- the batch TRL builds without its extra pass carries no old log-probs and no ratio, and no log-prob pass runs;
- for each of TRL's four correction modes, with one micro-batch per generation and with a generation split over two
  accumulated micro-batches, the loss computes the same ratio, losses and gradients as TRL's own code with its extra
  pass, bit for bit, on the same generated batch (vLLM's sampling log-probs are the model's own plus noise, so
  truncation and masking engage, and one token vLLM could not score is NaN); TRL's sampling metrics are logged per
  micro-batch (TRL: per generation batch; the same values with one micro-batch);
- the reuse happens only when it is exact: table-driven over TRL's on-policy test, dropout and the switch.
The vLLM end-to-end run (tests/test_weight_sync.py) trains with it and logs TRL's sampling metrics.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from r1exp.config.compose import compose
from r1exp.patches import trl_on_policy as trl_trainer

MODES = ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]
METRICS = ("sampling/sampling_logp_difference/mean", "sampling/sampling_logp_difference/max",
           "sampling/importance_sampling_ratio/min", "sampling/importance_sampling_ratio/mean",
           "sampling/importance_sampling_ratio/max")


# (per-device micro-batch, micro-batches per generation = gradient_accumulation_steps): on-policy either way
SHAPES = {"one micro-batch": (8, 1), "a generation split over two accumulated micro-batches": (4, 2)}


@pytest.fixture(scope="module", params=list(SHAPES))
def trainer(request, tmp_path_factory):
    """A real loader=peft build; generation replaced by one fixed batch so both paths see the same completions."""
    from r1exp.build import build
    from r1exp.components import resolve

    micro, accumulation = SHAPES[request.param]
    cfg = compose(["engine=hf", "logger=none", f"trainer.per_device_train_batch_size={micro}",
                   f"trainer.gradient_accumulation_steps={accumulation}", "trainer.num_generations=4",
                   "trainer.max_completion_length=12", "+trainer.bf16=false", "hardware.device=cpu"])
    built = build(resolve(cfg), tmp_path_factory.mktemp("reuse"), "none", callbacks=[])
    trainer = built.trainer
    assert trainer.args.steps_per_generation == accumulation
    rows = next(iter(trainer.get_train_dataloader()))  # one generation batch: micro x accumulation rows
    fixed = list(trainer._generate([row["prompt"] for row in rows]))
    fixed[4] = noisy_sampling_logps(trainer, fixed[0], fixed[1])
    trainer._generate = lambda prompts: tuple(fixed)
    trainer.use_vllm = True  # as with an engine: TRL corrects with the (fixed) sampling log-probs
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = accumulation  # set by Trainer.train for each step
    return trainer, rows


def noisy_sampling_logps(trainer, prompt_ids, completion_ids) -> list[list[float | None]]:
    """The model's own log-prob of each completion token, plus noise (vLLM's sampler differs); one token is None."""
    from test_weight_sync import trainer_logprobs

    assert trainer.temperature == 1.0  # trainer_logprobs does not scale the logits
    g = torch.Generator().manual_seed(0)
    own = trainer_logprobs(trainer.model, [p + c for p, c in zip(prompt_ids, completion_ids)],
                           [len(p) for p in prompt_ids])
    out = [(torch.tensor(logps) + 0.8 * torch.randn(len(logps), generator=g)).tolist() for logps in own]
    out[0][0] = None
    return out


def loss_and_grads(trainer, micro_batches):
    """The accumulated step: each micro-batch's loss backpropagated in turn, as Trainer.training_step does."""
    trainer.model.zero_grad(set_to_none=True)
    losses = []
    for inputs in micro_batches:
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        losses.append(loss.detach())
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return torch.stack(losses), grads


def one_batch(trainer, rows, reuse: bool):
    """(the micro-batches' inputs after the loss, keys before it, losses, grads, metrics, log-prob passes during
    generation) for one path; the generation batch is split as TRL's _prepare_inputs splits it."""
    from trl.trainer.utils import split_tensor_dict

    trainer._reuse_logps = reuse
    trainer._metrics["train"].clear()
    passes = []
    forward = trainer._get_per_token_logps_and_entropies
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: passes.append(1) or forward(*a, **k)
    try:
        generation = trainer._generate_and_score_completions(rows)
    finally:
        del trainer._get_per_token_logps_and_entropies
    before = set(generation)
    micro_batches = split_tensor_dict(generation, trainer.args.steps_per_generation)
    loss, grads = loss_and_grads(trainer, micro_batches)
    metrics = {k: list(trainer._metrics["train"][k]) for k in METRICS}
    return micro_batches, before, loss, grads, metrics, len(passes)


@pytest.mark.parametrize("mode, clip_min", [(m, c) for m in MODES for c in (None, 0.5)
                                            if c is not None or m.endswith("mask")])
def test_the_loss_forward_gives_what_trls_extra_pass_gives(trainer, mode, clip_min):
    trainer, rows = trainer
    trainer.vllm_importance_sampling_mode = mode
    trainer.vllm_importance_sampling_clip_min = clip_min if clip_min is not None else (
        None if mode.endswith("mask") else 0.0)
    trainer.vllm_importance_sampling_clip_max = 2.0
    ref, ref_keys, ref_loss, ref_grads, ref_metrics, ref_passes = one_batch(trainer, rows, reuse=False)
    ours, our_keys, loss, grads, metrics, passes = one_batch(trainer, rows, reuse=True)

    assert ref_passes == 1 and {"old_per_token_logps", "importance_sampling_ratio"} <= ref_keys
    assert passes == 0 and not our_keys & {"old_per_token_logps", "importance_sampling_ratio"}
    ratio = torch.cat([m["importance_sampling_ratio"] for m in ref])
    engaged = (ratio == 0) if mode.endswith("mask") else (ratio == 2.0)
    assert engaged.any() and (ratio != 1).any(), "the noise should make the clip or the mask engage"
    # the same forward over the same rows: the same bits (float32 on CPU), so a reproduced run is exact too
    assert torch.equal(torch.cat([m["importance_sampling_ratio"] for m in ours]), ratio)
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and grads
    assert all(torch.equal(grads[name], ref_grads[name]) for name in grads)
    for key in METRICS:  # TRL logs once per generation batch, the reuse once per micro-batch
        assert len(ref_metrics[key]) == 1 and len(metrics[key]) == len(ours), key
        assert metrics[key] == [per_micro_batch(key, m, mode) for m in ref], key
        if len(ours) == 1:
            assert metrics[key] == ref_metrics[key] and math.isfinite(ref_metrics[key][0]), key


def per_micro_batch(key, ref, mode):
    """What TRL would log for this metric if the micro-batch were its whole generation batch, from TRL's tensors."""
    mask = ref["completion_mask"].bool()
    delta = (ref["old_per_token_logps"] - ref["sampling_per_token_logps"]).abs()
    delta = delta[mask & ~torch.isnan(delta)]
    ratio = ref["importance_sampling_ratio"]
    values = delta if "logp_difference" in key else (ratio.flatten() if mode.startswith("sequence") else ratio[mask])
    return getattr(values, key.rsplit("/", 1)[1])().item()


def test_the_installed_trl_computes_the_correction_where_the_reuse_expects_it():
    from trl import GRPOTrainer

    assert trl_trainer.trl_supports_reuse(GRPOTrainer)

    class Changed(GRPOTrainer):
        def _compute_loss(self, model, inputs):  # a TRL whose loss no longer reads the ratio from inputs
            return 0

    assert not trl_trainer.trl_supports_reuse(Changed)


def test_the_built_trainer_says_which_log_probs_it_uses(trainer):
    trainer, _ = trainer
    assert trainer.old_logprobs["source"] == "TRL's pass"  # built with engine=hf: no correction to make
    assert "no importance-sampling correction" in trainer.old_logprobs["why"]


def fake(accumulation=1, per_generation=1, iterations=1, vllm=True, correction=True, dropout=0.0, config=None):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(dropout))
    model.config = SimpleNamespace(to_dict=lambda: dict(config or {}))
    return SimpleNamespace(
        args=SimpleNamespace(gradient_accumulation_steps=accumulation, steps_per_generation=per_generation),
        num_iterations=iterations, use_vllm=vllm, vllm_importance_sampling_correction=correction, model=model)


@pytest.mark.parametrize("case, trainer, reused_or_why", [
    ("TRL's defaults: one generation per optimizer step", fake(), None),
    ("generation batch split over accumulated micro-batches", fake(accumulation=4, per_generation=4), None),
    ("two passes over one generation inside one optimizer step", fake(accumulation=4, per_generation=2,
                                                                     iterations=2), None),
    ("a generation reused after an optimizer step", fake(iterations=2), "off-policy"),
    ("more generation slices than accumulated micro-batches", fake(accumulation=2, per_generation=4), "off-policy"),
    ("LoRA dropout", fake(dropout=0.05), "dropout"),
    ("attention dropout in the model's config", fake(config={"attention_dropout": 0.1}), "dropout"),
    ("GPT-2 style dropout names", fake(config={"resid_pdrop": 0.1}), "dropout"),
    ("unset dropouts are not dropout", fake(config={"classifier_dropout": None, "attention_dropout": 0.0}), None),
    ("no vLLM: TRL computes no old log-probs", fake(vllm=False), "no importance-sampling correction"),
    ("the correction switched off", fake(correction=False), "no importance-sampling correction"),
])
def test_the_reuse_happens_only_where_it_is_exact(case, trainer, reused_or_why, monkeypatch):
    monkeypatch.setattr(trl_trainer, "trl_supports_reuse", lambda cls: True)
    why = trl_trainer.why_not_reused(trainer, object)
    if reused_or_why is None:
        assert why is None, case
    else:
        assert why is not None and reused_or_why in why, (case, why)
