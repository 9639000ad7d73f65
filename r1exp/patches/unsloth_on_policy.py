"""The trainer loader=unsloth runs: Unsloth's GRPOTrainer, less its no-grad log-prob pass when the run is on-policy.

Unsloth rewrites TRL's `_generate_and_score_completions` (the generated trainer in `unsloth_compiled_cache/`) so
that, whenever vLLM generates, the policy runs once more without gradients over every completion of the generation
batch (`if ... or (self.use_vllm):`), and it moves TRL's importance-sampling correction into its loss
(`grpo_compute_loss`: exp(old - sampling), truncated or masked, and the sampling metrics): 0.60 s of a 4.44 s step
at 7B on the H200; without it, back to back, 3.90 s and the same peak (docs/benchmarks.md).

On-policy with no dropout (r1exp/patches/on_policy.py) that pass computes what the loss's own forward computes over
the same rows. `OnPolicyUnslothTrainer` then skips it (the call returns no log-probs, so the batch carries none) and
the loss takes pi_old = the forward's detached log-probs: Unsloth's loss does that itself when it has no old
log-probs (`new - new.detach()`), except for the importance-sampling ratio and its metrics, which read `old` and fail
on None. `install_old_fallback` gives Unsloth's loss function (`UnslothEfficientGRPO`, whose forward receives the
forward's log-probs) `new.detach()` for a missing `old`, which is TRL's own fallback (`per_token_logps.detach() if
old_per_token_logps is None`); with `old` present it changes nothing. Which one ran is in `trainer.old_logprobs`
(and run.json); `loader.reuse_training_logps=false` builds Unsloth's class unchanged.

What this relies on in Unsloth's generated code is read from it before the reuse is switched on
(`skippable_pass`): in the generation step, the first log-prob call is the old-log-prob pass over
`self.model`, and its result feeds nothing there but the batch the loss reads (Unsloth's `if False and ...` blocks
aside); the loss passes the batch's old log-probs to `UnslothEfficientGRPO.apply` as its second argument. Generated
code that differs keeps its pass, and run.json says why.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap

from r1exp.patches.on_policy import why_not_on_policy

PASS = "_get_per_token_logps_and_entropies"
OLD = "old_per_token_logps"
LOSS_CALL = re.compile(r"UnslothEfficientGRPO\.apply\(\s*\w+,\s*old_logps\s*,")


def _is_self_attribute(node, name: str) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == name and \
        isinstance(node.value, ast.Name) and node.value.id == "self"


def _disabled(node: ast.If) -> bool:
    """`if False and ...:` (how Unsloth switches off TRL's blocks)."""
    test = node.test
    return isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) and \
        isinstance(test.values[0], ast.Constant) and test.values[0].value is False


def _stores_in_batch(node, parent) -> bool:
    """`old is not None` or `output["old_per_token_logps"] = old`: what the loss reads."""
    if isinstance(parent, ast.Compare):
        return parent.left is node and isinstance(parent.ops[0], ast.IsNot)
    return isinstance(parent, ast.Assign) and parent.value is node and all(
        isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value == OLD
        for t in parent.targets)


def old_pass_arity(generate_source: str) -> tuple[int | None, str]:
    """(how many values the generation step's old-log-prob pass returns, "") when the pass can be skipped; else
    (None, why not). generate_source: the generated `_generate_and_score_completions`. See the module docstring."""
    tree = ast.parse(textwrap.dedent(generate_source))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_self_attribute(n.func, PASS)),
                   key=lambda n: (n.lineno, n.col_offset))
    if not calls:
        return None, f"no {PASS} call in the generation step"
    first, assign = calls[0], parents.get(calls[0])
    target = assign.targets[0] if isinstance(assign, ast.Assign) and len(assign.targets) == 1 else None
    if not (isinstance(target, ast.Tuple) and isinstance(target.elts[0], ast.Name) and target.elts[0].id == OLD):
        return None, f"the generation step's first {PASS} call does not compute {OLD}"
    if not (first.args and _is_self_attribute(first.args[0], "model")):
        return None, f"the generation step's first {PASS} call is not over self.model"
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id == OLD and isinstance(node.ctx, ast.Load)):
            continue
        ancestor, used = parents.get(node), node
        if _stores_in_batch(node, ancestor):
            continue
        while ancestor is not None and not (isinstance(ancestor, ast.If) and _disabled(ancestor)
                                            and used in ancestor.body):
            used, ancestor = ancestor, parents.get(ancestor)
        if ancestor is None:
            return None, f"the generation step uses {OLD} at line {node.lineno} (not only the loss)"
    return len(target.elts), ""


def called_function(function, name: str = "_generate_and_score_completions"):
    """The function named `name` that `function` runs: Unsloth wraps its generated method in closures that call it
    (`_wrap_grpo_generate_and_score`, without functools.wraps), which are followed here, as is `__wrapped__`."""
    seen = set()
    while getattr(function, "__name__", name) != name and id(function) not in seen:
        seen.add(id(function))
        inner = getattr(function, "__wrapped__", None)
        if inner is None:   # a closure over the function it calls (the one named `name`, or its only function)
            closed = [f for f in inspect.getclosurevars(function).nonlocals.values() if inspect.isfunction(f)]
            named = [f for f in closed if f.__name__ == name]
            inner = (named or closed)[0] if len(named or closed) == 1 else None
        if inner is None:
            break
        function = inner
    return function


def loss_function_namespace(trainer_class) -> dict:
    """The globals Unsloth's loss runs in (its generated module): where `grpo_accumulated_loss` finds
    `UnslothEfficientGRPO`."""
    compute_loss = called_function(trainer_class.compute_loss, "compute_loss")
    return compute_loss.__globals__["grpo_accumulated_loss"].__globals__


def why_loss_differs(compute_loss: str, accumulated_loss: str) -> str | None:
    """None when Unsloth's generated `compute_loss` reads pi_old from the batch and `grpo_accumulated_loss` hands it
    to `UnslothEfficientGRPO.apply` second (where `install_old_fallback` supplies it); else what differs."""
    if f'inputs.get("{OLD}"' not in compute_loss:
        return f"Unsloth's compute_loss does not read {OLD} from the batch"
    calls = accumulated_loss.count("UnslothEfficientGRPO.apply(")
    if calls == 0 or len(LOSS_CALL.findall(accumulated_loss)) != calls:
        return "Unsloth's grpo_accumulated_loss does not pass old_logps to UnslothEfficientGRPO.apply"
    return None


def skippable_pass(trainer_class) -> tuple[int | None, str]:
    """(how many values the old-log-prob pass returns, "") when the trainer class's generated code lets it be
    skipped (old_pass_arity, then why_loss_differs); else (None, what differs). Each piece of source is read and
    parsed once."""
    try:
        arity, why = old_pass_arity(inspect.getsource(called_function(trainer_class._generate_and_score_completions)))
        if arity is None:   # TRL's own trainer, for one, stops here (it has no grpo_accumulated_loss)
            return None, why
        why = why_loss_differs(inspect.getsource(called_function(trainer_class.compute_loss, "compute_loss")),
                               inspect.getsource(loss_function_namespace(trainer_class)["grpo_accumulated_loss"]))
        return (None, why) if why else (arity, "")
    except (AttributeError, KeyError, OSError, TypeError, SyntaxError) as e:
        return None, f"Unsloth's generated trainer could not be read ({type(e).__name__}: {e})"


def install_old_fallback(trainer_class):
    """Unsloth's loss function, as its loss calls it, takes the forward's detached log-probs for a missing `old`
    (idempotent; with `old` given it is Unsloth's, unchanged). Returns the class now in place."""
    namespace = loss_function_namespace(trainer_class)
    original = namespace["UnslothEfficientGRPO"]
    if getattr(original, "old_fallback", False):
        return original

    class UnslothEfficientGRPOOldFallback(original):
        old_fallback = True

        @staticmethod
        def forward(ctx, new_logps, old_logps, *args, **kwargs):
            old_logps = new_logps.detach() if old_logps is None else old_logps
            return original.forward(ctx, new_logps, old_logps, *args, **kwargs)

    namespace["UnslothEfficientGRPO"] = UnslothEfficientGRPOOldFallback
    return UnslothEfficientGRPOOldFallback


def pass_to_skip(trainer, trainer_class) -> tuple[int | None, str | None]:
    """(how many values Unsloth's old-log-prob pass returns, None) when it can be skipped; else (None, why it runs)
    (trainer_class: Unsloth's trainer, whose generated code is checked)."""
    if not trainer.use_vllm:
        return None, "no vLLM: Unsloth computes no old log-probs on-policy"
    if (why := why_not_on_policy(trainer)) is not None:
        return None, why
    arity, why = skippable_pass(trainer_class)
    return arity, why or None


@functools.cache
def trainer_class():
    """Unsloth's GRPOTrainer (trl.GRPOTrainer once Unsloth has patched TRL, i.e. after the model is loaded) with the
    on-policy reuse."""
    from trl import GRPOTrainer

    class OnPolicyUnslothTrainer(GRPOTrainer):
        """Unsloth's GRPOTrainer whose on-policy pi_old is the loss's own forward."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # with the reuse: how many values the skipped pass returns (None each); None: the pass runs
            self._old_pass_values, why = pass_to_skip(self, GRPOTrainer)
            self._skip_old_pass = False
            if why is None:
                install_old_fallback(GRPOTrainer)
            self.old_logprobs = {"source": "training forward" if why is None else "Unsloth's pass", "why": why}

        def _generate_and_score_completions(self, inputs):
            self._skip_old_pass = self._old_pass_values is not None
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                self._skip_old_pass = False

        def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):
            if self._skip_old_pass:  # the generation step's first call: the old-log-prob pass (checked)
                self._skip_old_pass = False
                if model is self.model:
                    return (None,) * self._old_pass_values
            return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)

    return OnPolicyUnslothTrainer
