"""When the loss's own forward computes pi_old: the test both trainers' log-prob reuse relies on
(r1exp/patches/trl_on_policy.py for loader=peft, r1exp/patches/unsloth_on_policy.py for loader=unsloth).

A run is on-policy when the weights do not change between a generation and the last loss over its completions: TRL's
own test, `gradient_accumulation_steps % (steps_per_generation * num_iterations) == 0`. Then a no-grad forward over
the completions before the loss and the loss's forward over the same rows compute the same log-probs, unless
something in the model is random (dropout): a second forward would be a different draw.
"""

from __future__ import annotations


def has_dropout(model) -> bool:
    """Any dropout that is active in training: a Dropout module with p > 0, or a config's *dropout* > 0 (attention
    dropout is functional, not a module)."""
    import torch

    if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return True
    config = getattr(model, "config", None)
    values = config.to_dict() if hasattr(config, "to_dict") else {}
    return any(("dropout" in key or key.endswith("pdrop")) and type(v) in (int, float) and v > 0
               for key, v in values.items())


def why_not_on_policy(trainer) -> str | None:
    """None when the loss's forward computes pi_old exactly (on-policy, no dropout); else why not."""
    args = trainer.args
    generate_every = args.steps_per_generation * trainer.num_iterations
    if args.gradient_accumulation_steps % generate_every != 0:
        return (f"off-policy: gradient_accumulation_steps={args.gradient_accumulation_steps} is not a multiple of "
                f"steps_per_generation x num_iterations = {generate_every}")
    if has_dropout(trainer.model):
        return "the model has dropout: a second forward is a different draw"
    return None
