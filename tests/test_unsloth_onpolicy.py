"""On-policy, loader=unsloth takes pi_old from the loss's own forward instead of Unsloth's no-grad pass
(r1exp/patches/unsloth_on_policy.py, loader.reuse_training_logps).

Unsloth does not import without a GPU, so its side is specified here on the code it generates (the definitions r1exp
reads of the trainer Unsloth wrote on an H200, tests/fixtures/unsloth_grpo_trainer.py):
- the check that reads Unsloth's generated `_generate_and_score_completions` accepts it only when skipping the pass
  is safe (table below), reads the method under Unsloth's wrapper, and refuses TRL's own trainer (which uses pi_old
  in the generation step);
- without pi_old, Unsloth's own loss function fails; with r1exp's fallback it computes, for each correction mode,
  the loss, metrics and gradient it computes given pi_old = the forward's detached log-probs, bit for bit.
The H200 runs (bench/results/gpu/logprob_reuse/unsloth_7b and unsloth_0.5b, tests/test_gpu_ratios.py) train with it
and compare it with Unsloth's pass side by side.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest

from r1exp.patches import unsloth_on_policy as unsloth_trainer

# Unsloth's generated trainer as an H200 run wrote it (unsloth_compiled_cache/UnslothGRPOTrainer.py), the definitions
# r1exp reads of it
GENERATED = Path(__file__).resolve().parent / "fixtures" / "unsloth_grpo_trainer.py"

# Unsloth's rewrite of TRL 1.15's generation step, the lines the check reads (unsloth 2026.10.5)
UNSLOTH_SHAPE = """
def _generate_and_score_completions(self, inputs):
    with torch.no_grad():
        if self.args.gradient_accumulation_steps % generate_every != 0 or (
            self.use_vllm
        ):
            old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, prompt_completion_ids, attention_mask, logits_to_keep, batch_size=batch_size)
        else:
            old_per_token_logps = None
        if False and self.use_vllm and self.vllm_importance_sampling_correction:
            diff = (old_per_token_logps - sampling_per_token_logps) * mask
        if self.beta != 0.0:
            ref_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, prompt_completion_ids, attention_mask, logits_to_keep, batch_size=batch_size)
    if False and self.use_vllm and self.vllm_importance_sampling_correction:
        delta = torch.abs(old_per_token_logps - sampling_per_token_logps)
    output = {"prompt_ids": prompt_ids}
    if old_per_token_logps is not None:
        output["old_per_token_logps"] = old_per_token_logps
    return output
"""


def variant(old: str, new: str) -> str:
    assert old in UNSLOTH_SHAPE
    return UNSLOTH_SHAPE.replace(old, new)


@pytest.mark.parametrize("case, source, arity_or_why", [
    ("Unsloth's generation step: pi_old only feeds the loss", UNSLOTH_SHAPE, 3),
    ("a pass returning two values", variant("old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies",
                                            "old_per_token_logps, _ = self._get_per_token_logps_and_entropies"), 2),
    ("the correction computed in the generation step (TRL's code)",
     variant("if False and self.use_vllm and self.vllm_importance_sampling_correction:\n            diff",
             "if self.use_vllm and self.vllm_importance_sampling_correction:\n            diff"), "line"),
    ("pi_old used in the else of a switched-off block",
     variant("    output = {", "    else:\n        x = old_per_token_logps\n    output = {"), "line"),
    ("the first log-prob call is the reference model's",
     variant("old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(\n                self.model",
             "old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(\n                self.ref_model"),
     "not over self.model"),
    ("the first log-prob call computes something else",
     variant("old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies",
             "ref_per_token_logps, _, _ = self._get_per_token_logps_and_entropies"), "does not compute"),
    ("no log-prob call at all",
     UNSLOTH_SHAPE.replace("self._get_per_token_logps_and_entropies(", "self.logps("), "no _get_per_token_logps"),
])
def test_the_pass_is_skipped_only_where_nothing_but_the_loss_reads_it(case, source, arity_or_why):
    arity, why = unsloth_trainer.old_pass_arity(source)
    if isinstance(arity_or_why, int):
        assert (arity, why) == (arity_or_why, ""), case
    else:
        assert arity is None and arity_or_why in why, (case, why)


def test_trls_own_generation_step_is_refused():
    """TRL computes the correction from pi_old in the generation step: skipping its pass there would be wrong."""
    from trl import GRPOTrainer

    arity, why = unsloth_trainer.old_pass_arity(inspect.getsource(GRPOTrainer._generate_and_score_completions))
    assert arity is None and "uses old_per_token_logps" in why
    assert "uses old_per_token_logps" in unsloth_trainer.skippable_pass(GRPOTrainer)[1]


def generated_definition(name: str, inside: str | None = None) -> str:
    """The source of `name` in Unsloth's generated trainer (a method of class `inside`, or a module-level one)."""
    import ast

    text = GENERATED.read_text()
    tree = ast.parse(text)
    body = next(n for n in tree.body if getattr(n, "name", None) == inside).body if inside else tree.body
    node = next(n for n in body if getattr(n, "name", None) == name)
    return "\n".join(text.splitlines()[node.lineno - 1 - len(node.decorator_list):node.end_lineno])


def test_unsloths_generated_trainer_computes_and_reads_pi_old_where_the_reuse_expects_it():
    """The trainer Unsloth 2026.10.5 generated from TRL 1.15 on the H200 (the run that kept it trained with its pass
    because the check then read the wrapper Unsloth puts around the method, not the method)."""
    generate = generated_definition("_generate_and_score_completions", "_UnslothGRPOTrainer")
    assert unsloth_trainer.old_pass_arity(generate) == (3, "")
    assert unsloth_trainer.why_loss_differs(
        generated_definition("compute_loss", "_UnslothGRPOTrainer"),
        generated_definition("grpo_accumulated_loss")) is None
    assert "old_logps" in unsloth_trainer.why_loss_differs(
        generated_definition("compute_loss", "_UnslothGRPOTrainer"),
        generated_definition("grpo_accumulated_loss").replace("old_logps,", "None,"))


def test_the_method_is_read_under_unsloths_wrapper():
    """Unsloth wraps the generated method in a closure that calls it, without functools.wraps."""
    def _generate_and_score_completions(self, inputs):
        return inputs

    def wrap(original):
        def wrapped(self, *args, **kwargs):
            return original(self, *args, **kwargs)
        return wrapped

    assert unsloth_trainer.called_function(wrap(wrap(_generate_and_score_completions))) is \
        _generate_and_score_completions


def test_the_check_reads_indented_methods():
    """inspect.getsource of a method keeps the class's indentation."""
    indented = textwrap.indent(UNSLOTH_SHAPE, "    ")
    assert unsloth_trainer.old_pass_arity(indented) == (3, "")


def unsloth_loss_namespace(source_file, monkeypatch) -> dict:
    """Unsloth's loss function (`UnslothEfficientGRPO`, `grpo_compute_loss`) as its generated trainer defines it,
    executed on CPU. Its chunk function is wrapped by a torch.compile decorator imported inside the forward; r1exp's
    Unsloth runs train with TorchDynamo off (loader.compile=false), so the stand-in decorator leaves it uncompiled
    as there."""
    import ast
    import math
    import sys
    import types

    import torch

    utils = types.ModuleType("unsloth_zoo.temporary_patches.utils")
    utils.torch_compile_with_fallback = lambda **options: (lambda function: function)
    for name in ("unsloth_zoo", "unsloth_zoo.temporary_patches"):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
    monkeypatch.setitem(sys.modules, utils.__name__, utils)
    text = source_file.read_text()
    wanted = {"UnslothEfficientGRPO", "grpo_compute_loss"}
    nodes = [n for n in ast.parse(text).body if getattr(n, "name", None) in wanted]
    assert {n.name for n in nodes} == wanted, source_file
    namespace = {"torch": torch, "math": math, "torch_compile_options": {}}
    exec(compile(ast.Module(nodes, type_ignores=[]), str(source_file), "exec"), namespace)
    exec("def grpo_accumulated_loss(): pass\nclass Trainer:\n    def compute_loss(self): pass\n", namespace)
    return namespace


def efficient_grpo_loss(function, new, old, sampling, mode):
    """Unsloth's loss function over one micro-batch as grpo_accumulated_loss calls it: (loss, metrics..., gradient
    of the loss with respect to the forward's log-probs)."""
    import torch

    torch.manual_seed(0)
    rows, tokens = new.shape
    mask = torch.ones(rows, tokens)
    mask[1, tokens - 3:] = 0
    advantages = torch.linspace(-1.0, 1.0, rows)
    kwargs = dict(loss_type="dapo", use_vllm=True, vllm_importance_sampling_correction=True,
                  vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_min=0.5,
                  vllm_importance_sampling_clip_max=2.0, num_items_in_batch=mask.sum(),
                  current_gradient_accumulation_steps=1, epsilon_low=0.2, epsilon_high=0.2)
    new = new.clone().requires_grad_(True)
    outputs = function.apply(new, old, None, sampling, None, torch.zeros(rows, tokens, dtype=torch.long), mask,
                             advantages, 0.0, None, 1, kwargs, None)
    outputs[0].backward()
    return [o.detach() if o is not None else None for o in outputs] + [new.grad]


@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
def test_a_missing_pi_old_is_the_forwards_own_in_unsloths_loss(mode, monkeypatch):
    """Without the pass the batch carries no pi_old. Unsloth's own loss function then fails (its importance-sampling
    ratio reads `old`); with the fallback it computes what it computes given pi_old = the forward's detached
    log-probs: the same loss, metrics and gradient, bit for bit."""
    import torch

    namespace = unsloth_loss_namespace(GENERATED, monkeypatch)
    original = namespace["UnslothEfficientGRPO"]
    torch.manual_seed(1)
    new = -torch.rand(4, 6) * 3
    sampling = new + 0.3 * torch.randn(4, 6)
    sampling[2, 1] = float("nan")      # a token vLLM could not score
    with pytest.raises(TypeError):
        efficient_grpo_loss(original, new, None, sampling, mode)
    fallback = unsloth_trainer.install_old_fallback(namespace["Trainer"])
    assert namespace["UnslothEfficientGRPO"] is fallback
    assert unsloth_trainer.install_old_fallback(namespace["Trainer"]) is fallback   # idempotent
    reused = efficient_grpo_loss(fallback, new, None, sampling, mode)
    given = efficient_grpo_loss(original, new, new.clone(), sampling, mode)
    for a, b in zip(reused, given, strict=True):
        assert torch.equal(a, b) if a is not None else b is None
    other = -torch.rand(4, 6) * 3       # with pi_old given, the fallback is Unsloth's function unchanged
    for a, b in zip(efficient_grpo_loss(fallback, new, other, sampling, mode),
                    efficient_grpo_loss(original, new, other, sampling, mode), strict=True):
        assert torch.equal(a, b) if a is not None else b is None
