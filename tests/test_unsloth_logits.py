"""loader.recompute_logits: Unsloth's loss log-probs recomputed block by block in the backward
(r1exp/patches/unsloth_logits.py). Unsloth cannot be imported without a GPU, so the function it wraps is written here
with Unsloth's signature and arithmetic (unsloth_zoo 2026.10.5, `chunked_hidden_states_selective_log_softmax`); the
GPU runs in bench/results/gpu/unsloth_logits use the real one."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from r1exp.errors import ConfigError
from r1exp.patches import unsloth_logits


def selective_log_softmax(hidden_states, lm_head, index, chunks=4, logit_scale_multiply=0.0, logit_scale_divide=0.0,
                          logit_softcapping=0.0, temperature=1.0, lm_head_bias=None):
    """Unsloth's per-token log-probs: chunks of rows, head matmul, float32 copy, gather - logsumexp."""
    flat_hidden, flat_index = hidden_states.reshape(-1, hidden_states.shape[-1]), index.reshape(-1)
    rows = flat_hidden.shape[0]
    chunks = max(1, min(chunks, rows))
    bounds = [(i * rows) // chunks for i in range(chunks + 1)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        logits = torch.nn.functional.linear(flat_hidden[a:b], lm_head, lm_head_bias)
        if logit_scale_multiply != 0.0:
            logits = logits * logit_scale_multiply
        if logit_scale_divide != 0.0:
            logits = logits / logit_scale_divide
        if logit_softcapping != 0.0:
            logits = logit_softcapping * torch.tanh(logits / logit_softcapping)
        logits = logits.to(torch.float32)
        if temperature != 1.0:
            logits = logits / temperature
        picked = torch.gather(logits, -1, flat_index[a:b].unsqueeze(-1)).squeeze(-1)
        out.append(picked - torch.logsumexp(logits, -1))
    return torch.cat(out).reshape(hidden_states.shape[0], hidden_states.shape[1])


def inputs(batch, length, hidden, vocab, head_grad, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, length, hidden, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(vocab, hidden, generator=g, dtype=torch.float64, requires_grad=head_grad)
    b = torch.randn(vocab, generator=g, dtype=torch.float64, requires_grad=head_grad) if bias else None
    idx = torch.randint(0, vocab, (batch, length), generator=g)
    return h, w, b, idx


def run(fn, h, w, b, idx, **kw):
    """log-probs and the gradients of a weighted sum of them (as a loss would weigh tokens)."""
    for t in (h, w, b):
        if t is not None:
            t.grad = None
    out = fn(h, w, idx, 4, **kw, **({"lm_head_bias": b} if b is not None else {}))
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * weights).sum().backward()
    return out.detach(), [None if t is None or t.grad is None else t.grad.clone() for t in (h, w, b)]


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 9), vocab=st.integers(2, 40), head_grad=st.booleans(),
       bias=st.booleans(), temperature=st.sampled_from([1.0, 0.7]), softcap=st.sampled_from([0.0, 30.0]),
       per_block=st.integers(2, 7))
def test_recomputed_log_probs_and_gradients_are_the_originals(batch, length, vocab, head_grad, bias, temperature,
                                                              softcap, per_block):
    h, w, b, idx = inputs(batch, length, 5, vocab, head_grad, bias)
    kw = dict(temperature=temperature, logit_softcapping=softcap)
    want, want_grads = run(selective_log_softmax, h, w, b, idx, **kw)
    got, got_grads = run(unsloth_logits.recomputing(selective_log_softmax, per_block), h, w, b, idx, **kw)
    assert got.shape == want.shape == (batch, length)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, e in zip(got_grads, want_grads):
        assert (g is None) == (e is None)
        if e is not None:
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def saved_for_backward(fn, *args, **kwargs) -> list[int]:
    """Element counts of the tensors autograd keeps between this call's forward and its backward."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args, **kwargs)
    return sizes


def test_the_backward_no_longer_keeps_the_float32_logits_of_every_token():
    tokens, vocab = 4 * 64, 1000
    h, w, _, idx = inputs(4, 64, 8, vocab, head_grad=False, bias=False)
    held = saved_for_backward(selective_log_softmax, h, w, idx, 4, temperature=0.7)
    kept = saved_for_backward(unsloth_logits.recomputing(selective_log_softmax, 16), h, w, idx, 4, temperature=0.7)
    assert sum(held) >= tokens * vocab          # every token's logits, the float32 copy at least
    assert max(kept, default=0) < 16 * vocab    # at most one block's, while it is recomputed


def test_without_gradients_the_original_runs_untouched():
    calls = []

    def original(hidden_states, lm_head, index, chunks=4):
        calls.append(chunks)
        return selective_log_softmax(hidden_states, lm_head, index, chunks)

    wrapped = unsloth_logits.recomputing(original)
    h, w, _, idx = inputs(2, 3, 4, 7, head_grad=False, bias=False)
    with torch.no_grad():
        wrapped(h, w, idx, 3)
    wrapped(h.detach(), w, idx, 3)            # nothing to differentiate
    assert calls == [3, 3] and wrapped.calls == 0
    wrapped(h, w, idx, 3)
    assert wrapped.calls == 1 and calls[-1] == 1   # the recomputing path: one chunk per block


@pytest.mark.parametrize("vocab, rows", [(151_936, 441), (32_000, 2097), (2**30, 2)])
def test_a_block_holds_256_mib_of_float32_logits_and_at_least_two_rows(vocab, rows):
    assert unsloth_logits.block_rows(vocab) == rows


def grpo_accumulated_loss(trainer):
    """Unsloth's loss imports the function inside its body (its source is copied into the generated trainer)."""
    from unsloth_zoo.rl_replacements import chunked_hidden_states_selective_log_softmax
    return chunked_hidden_states_selective_log_softmax


def loss_without_the_import(trainer):
    return trainer


@pytest.fixture
def zoo(monkeypatch):
    package = types.ModuleType("unsloth_zoo")
    module = types.ModuleType("unsloth_zoo.rl_replacements")
    module.chunked_hidden_states_selective_log_softmax = selective_log_softmax
    module.RL_REPLACEMENTS = {"grpo_accumulated_loss": grpo_accumulated_loss}
    package.rl_replacements = module
    monkeypatch.setitem(sys.modules, "unsloth_zoo", package)
    monkeypatch.setitem(sys.modules, "unsloth_zoo.rl_replacements", module)
    return module


def test_install_reaches_the_loss_and_each_run_of_a_process_gets_its_own_setting(zoo):
    installed = unsloth_logits.install(True)
    assert grpo_accumulated_loss(None) is installed and installed.original is selective_log_softmax
    assert unsloth_logits.install(True) is installed            # idempotent: never a wrapper of a wrapper
    assert unsloth_logits.install(False) is selective_log_softmax
    assert grpo_accumulated_loss(None) is selective_log_softmax


def test_a_zoo_whose_loss_computes_differently_stops_the_run_with_the_fix(zoo):
    from r1exp.loaders.unsloth_loader import UnslothLoader

    zoo.RL_REPLACEMENTS["grpo_accumulated_loss"] = loss_without_the_import
    with pytest.raises(ConfigError) as e:
        UnslothLoader(name="unsloth").install_loss_logits()
    (problem,) = e.value.problems
    assert problem.key == "loader.recompute_logits" and "recompute_logits=false" in problem.fix
    UnslothLoader(name="unsloth", recompute_logits=False).install_loss_logits()   # off: nothing to check
    assert zoo.chunked_hidden_states_selective_log_softmax is selective_log_softmax
