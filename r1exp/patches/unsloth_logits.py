"""Unsloth's GRPO loss without the micro-batch's float32 logits held for backward (loader.recompute_logits).

Unsloth's loss turns the completion tokens' hidden states into per-token log-probs with
`unsloth_zoo.rl_replacements.chunked_hidden_states_selective_log_softmax`: chunk by chunk, head matmul, a float32
copy, logsumexp. The chunks bound the forward, not the backward: autograd keeps every chunk's float32 logits until
the loss's backward, i.e. tokens x vocabulary x 4 bytes at once (9.3-11.5 GiB at 64 x 256 with Qwen's 151,936-token
vocabulary on the H200: the peak of every Unsloth run in docs/benchmarks.md, whatever the model size).

`recomputing(original)` runs the same function in blocks of rows under `torch.utils.checkpoint`: a block keeps only
its inputs (hidden states, already on the GPU) and recomputes its logits in the backward, one block at a time. The
values are the original function's on the same rows (each row's log-prob depends on that row alone), so the loss
and its gradients are the same computation, split differently; the cost is one more head matmul per block in the
backward, and the loss's forward+backward+optimizer phase measured no slower on the H200 (1.72 vs 1.79 s at 7B,
64 x 256; docs/benchmarks.md). Without gradients (the old/reference log-prob passes) the original runs
untouched.

Unsloth's loss imports the function from `unsloth_zoo.rl_replacements` inside its body at every call (its source
is copied into the generated trainer without module imports), so replacing that module attribute reaches it;
`install` checks that this still holds for the installed unsloth_zoo and says so when it does not.
"""

from __future__ import annotations

import functools
import inspect
import math
import re

ZOO_MODULE = "unsloth_zoo.rl_replacements"
FUNCTION = "chunked_hidden_states_selective_log_softmax"
LOSS = "grpo_accumulated_loss"

# The float32 logits one block may hold (its backward holds ~4x that: bf16 logits, float32 copy, their gradients)
BLOCK_LOGIT_BYTES = 256 * 2**20
# Bytes per logit of a block while it is recomputed and differentiated: bf16 logits (2), float32 copy (4), the
# temperature-scaled copy (4), the float32 gradient (4) and its bf16 cast (2)
BLOCK_BYTES_PER_LOGIT = 16


def block_rows(vocab: int) -> int:
    """Rows (tokens) per recomputed block: BLOCK_LOGIT_BYTES of float32 logits, at least 2 rows (a one-row head
    gradient is a K=1 matmul that Inductor mis-lowers, as Unsloth notes)."""
    return max(2, BLOCK_LOGIT_BYTES // (4 * int(vocab)))


def _block_bounds(rows: int, per_block: int) -> list[tuple[int, int]]:
    """Even blocks of at most `per_block` rows (so no block is much smaller than the others)."""
    count = max(1, math.ceil(rows / per_block))
    edges = [(i * rows) // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def recomputing(original, rows_per_block: int | None = None):
    """`original` (Unsloth's signature: hidden_states, lm_head, index, chunks, ...) with its logits recomputed in
    the backward instead of held, `rows_per_block` rows at a time (default: `block_rows` of the vocabulary). Same
    result tensor shape: (hidden_states.shape[0], hidden_states.shape[1])."""
    import torch
    from torch.utils.checkpoint import checkpoint

    signature = inspect.signature(original)

    def one_block(hidden, lm_head, index, rest):
        return original(hidden, lm_head, index, **rest)

    @functools.wraps(original)
    def log_probs(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        hidden, lm_head = bound.arguments["hidden_states"], bound.arguments["lm_head"]
        rest = {k: v for k, v in bound.arguments.items() if k not in ("hidden_states", "lm_head", "index")}
        needs_grad = hidden.requires_grad or lm_head.requires_grad or any(
            isinstance(v, torch.Tensor) and v.requires_grad for v in rest.values())
        if not torch.is_grad_enabled() or not needs_grad:
            return original(*args, **kwargs)
        log_probs.calls += 1
        if "chunks" in signature.parameters:
            rest["chunks"] = 1      # a block is already the size of one chunk
        per_block = rows_per_block or block_rows(lm_head.shape[0])
        width = hidden.shape[-1]
        flat_hidden = hidden.reshape(1, -1, width)
        flat_index = bound.arguments["index"].reshape(1, -1)
        pieces = [checkpoint(one_block, flat_hidden[:, a:b], lm_head, flat_index[:, a:b], rest, use_reentrant=False)
                  for a, b in _block_bounds(flat_hidden.shape[1], per_block)]
        return torch.cat(pieces, dim=1).reshape(hidden.shape[0], hidden.shape[1])

    log_probs.calls = 0          # calls that took the recomputing path (with gradients)
    log_probs.original = original
    return log_probs


def loss_imports_it_per_call(zoo) -> bool:
    """True when Unsloth's loss reads the function from the zoo module at call time (what replacing it relies on)."""
    loss = getattr(zoo, "RL_REPLACEMENTS", {}).get(LOSS) or getattr(zoo, LOSS, None)
    try:
        source = inspect.getsource(loss)
    except (TypeError, OSError):
        return False
    return re.search(rf"from {re.escape(ZOO_MODULE)} import \(?[\w\s,]*\b{FUNCTION}\b", source) is not None


class NotApplicable(RuntimeError):
    """The installed unsloth_zoo does not compute its loss's log-probs the way `recomputing` replaces."""


def install(enabled: bool):
    """Put the recomputing function in place of Unsloth's (enabled) or put the original back (not enabled), in this
    process; idempotent, so runs of one process (a Hydra multirun) each get their own setting. Returns the function
    now in place."""
    import importlib

    zoo = importlib.import_module(ZOO_MODULE)
    current = getattr(zoo, FUNCTION, None)
    if current is None:
        raise NotApplicable(f"{ZOO_MODULE} has no {FUNCTION}")
    original = getattr(current, "original", current)
    if not enabled:
        setattr(zoo, FUNCTION, original)
        return original
    if not loss_imports_it_per_call(zoo):
        raise NotApplicable(f"{ZOO_MODULE}.{LOSS} no longer imports {FUNCTION} at call time")
    if current is original:
        setattr(zoo, FUNCTION, recomputing(original))
    return getattr(zoo, FUNCTION)
