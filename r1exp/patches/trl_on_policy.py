"""The trainer loader=peft runs: TRL's GRPOTrainer, less one forward pass per step when the run is on-policy.

TRL's vLLM importance-sampling correction (`vllm_importance_sampling_correction`, on by default) weighs each
completion token by pi_old / pi_vllm, truncated or masked (`vllm_importance_sampling_mode`). To get pi_old,
`_generate_and_score_completions` runs the policy once more, without gradients, over every completion of the
generation batch, before the loss. On the H200 that pass was 0.68 s of a 5.05 s step at 7B; without it the step
took 4.15-4.41 s, back to back (docs/benchmarks.md).

When the run is on-policy and nothing in the model is random (r1exp/patches/on_policy.py), that pass computes what
the loss's own forward computes over the same rows, and TRL's loss already takes `per_token_logps.detach()` as pi_old
when no old log-probs are given. `OnPolicyGRPOTrainer` then skips the pass and computes the correction inside the
loss from the forward's detached log-probs, with TRL's arithmetic (`sampling_ratio`) and under TRL's metric names
(`sampling/sampling_logp_difference/*`, `sampling/importance_sampling_ratio/*`, per micro-batch). In every other case
TRL's code runs unchanged. Which one ran is in `trainer.old_logprobs` (and run.json);
`loader.reuse_training_logps=false` builds TRL's own class.

The hook: TRL's `_compute_loss` computes the policy's log-probs (`_get_per_token_logps_and_entropies`) before it
reads `inputs["importance_sampling_ratio"]`; the ratio is put into `inputs` right after that call. Both TRL methods
are checked for the lines this relies on (`trl_supports_reuse`); a TRL whose code differs keeps its own pass.
"""

from __future__ import annotations

import functools
import inspect
import math

from r1exp.patches.on_policy import why_not_on_policy

SEQUENCE_MODES = ("sequence_mask", "sequence_truncate")
TRUNCATE_MODES = ("token_truncate", "sequence_truncate")
MASK_MODES = ("token_mask", "sequence_mask")
# What this module relies on in TRL's GRPOTrainer (checked in its source, TRL 1.15-1.16).
TRL_LINES = {
    "_generate_and_score_completions": ("self.use_vllm and self.vllm_importance_sampling_correction",
                                        'output["sampling_per_token_logps"] = sampling_per_token_logps'),
    "_compute_loss": ("self._get_per_token_logps_and_entropies(", 'inputs["importance_sampling_ratio"]',
                      'per_token_logps.detach() if old_per_token_logps is None'),
}


def sampling_ratio(old, sampling, mask, mode: str, clip_min, clip_max):
    """pi_old / pi_vllm per token (token_* modes, shape (B, T)) or per sequence (sequence_* modes, (B, 1)), truncated
    to [clip_min, clip_max] or zeroed outside it: TRL's arithmetic. A token vLLM could not score (NaN) counts 1."""
    import torch

    diff = torch.nan_to_num((old - sampling) * mask, nan=0.0)
    if mode in SEQUENCE_MODES:
        diff = diff.sum(dim=-1, keepdim=True)
    ratio = torch.exp(diff)
    if mode in TRUNCATE_MODES:
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    if mode in MASK_MODES:
        low = -math.inf if clip_min is None else clip_min
        high = math.inf if clip_max is None else clip_max
        return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)
    raise ValueError(f"unknown vllm_importance_sampling_mode {mode!r}; TRL's: {(*TRUNCATE_MODES, *MASK_MODES)}")


@functools.cache
def trl_supports_reuse(trainer_class) -> bool:
    """The installed TRL computes the correction where this module expects it (see TRL_LINES)."""
    try:
        return all(all(line in inspect.getsource(getattr(trainer_class, method)) for line in lines)
                   for method, lines in TRL_LINES.items())
    except (AttributeError, OSError, TypeError):
        return False


def why_not_reused(trainer, trl_class) -> str | None:
    """None when the old log-probs can be the loss forward's own; else why TRL's pass runs (trl_class: TRL's
    GRPOTrainer, whose code is checked)."""
    if not (trainer.use_vllm and trainer.vllm_importance_sampling_correction):
        return "no importance-sampling correction (no vLLM or vllm_importance_sampling_correction=false): TRL " \
               "computes no old log-probs on-policy"
    if (why := why_not_on_policy(trainer)) is not None:
        return why
    if not trl_supports_reuse(trl_class):
        return "the installed TRL's GRPOTrainer does not compute the correction where r1exp expects it"
    return None


@functools.cache
def trainer_class():
    """TRL's GRPOTrainer with the on-policy reuse. Built on first use: TRL is heavy, and with loader=unsloth it must
    not be imported before Unsloth."""
    from trl import GRPOTrainer

    class OnPolicyGRPOTrainer(GRPOTrainer):
        """GRPOTrainer whose on-policy importance-sampling correction takes pi_old from the loss's own forward."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            why = why_not_reused(self, GRPOTrainer)
            self._reuse_logps = why is None
            self._loss_inputs = None   # the micro-batch whose ratio the loss's forward supplies
            self.old_logprobs = {"source": "training forward" if why is None else "TRL's pass", "why": why}

        def _generate_and_score_completions(self, inputs):
            if not self._reuse_logps:
                return super()._generate_and_score_completions(inputs)
            self.vllm_importance_sampling_correction = False  # TRL: no old log-prob pass, no ratio
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                self.vllm_importance_sampling_correction = True

        def _compute_loss(self, model, inputs):
            if self._reuse_logps and "importance_sampling_ratio" not in inputs:
                self._loss_inputs = inputs
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._loss_inputs = None

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            inputs, self._loss_inputs = self._loss_inputs, None  # the loss's first call: the policy's forward
            if inputs is not None:
                inputs["importance_sampling_ratio"] = self._sampling_ratio(out[0].detach(), inputs)
            return out

        def _sampling_ratio(self, old, inputs):
            import torch

            sampling = inputs["sampling_per_token_logps"]
            mask = inputs["completion_mask"] if "tool_mask" not in inputs else \
                inputs["completion_mask"] * inputs["tool_mask"]
            ratio = sampling_ratio(old, sampling, mask, self.vllm_importance_sampling_mode,
                                   self.vllm_importance_sampling_clip_min, self.vllm_importance_sampling_clip_max)
            with torch.no_grad():
                self._log_sampling_metrics(old, sampling, mask.bool(), ratio)
            return ratio

        def _log_sampling_metrics(self, old, sampling, mask, ratio):
            """TRL's sampling metrics, under its names, for this micro-batch."""
            import torch
            from trl.trainer.utils import nanmax, nanmin

            gather, zero = self.accelerator.gather, torch.tensor(0.0, device=old.device)
            metrics = self._metrics["train" if self.model.training else "eval"]
            delta = torch.abs(old - sampling)
            delta = delta[mask & ~torch.isnan(delta)]
            metrics["sampling/sampling_logp_difference/mean"].append(
                gather(delta.mean() if delta.numel() else zero).mean().item())
            metrics["sampling/sampling_logp_difference/max"].append(
                gather(delta.max() if delta.numel() else zero).max().item())
            flat = ratio.flatten() if self.vllm_importance_sampling_mode in SEQUENCE_MODES else ratio[mask]
            metrics["sampling/importance_sampling_ratio/min"].append(
                nanmin(gather(flat.min() if flat.numel() else zero)).item())
            metrics["sampling/importance_sampling_ratio/mean"].append(
                gather(flat.mean() if flat.numel() else zero).nanmean().item())
            metrics["sampling/importance_sampling_ratio/max"].append(
                nanmax(gather(flat.max() if flat.numel() else zero)).item())

    return OnPolicyGRPOTrainer
