"""The scores of an evaluation, from each prompt's k completions and whether each is correct.

pass@k is the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1):
with n samples of which c are correct, 1 - C(n - c, k) / C(n, k), averaged over prompts; pass@1 is then the share of
correct samples. maj@k: the most common extracted answer of a prompt's k samples is correct (ties: the first
sample's among the tied, so it does not depend on the order of a set).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(answers: list, correct: list[bool]) -> bool:
    """Whether the most common answer among the samples is a correct one (None answers do not vote)."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == top)
    return any(ok for a, ok in zip(answers, correct) if a == winner)


@dataclass(frozen=True)
class PromptResult:
    correct: list[bool]          # per sample
    answers: list                # per sample: the extracted answer (None: none)
    rewards: dict                # reward name -> list of per-sample scores
    lengths: list[int]           # per sample: completion tokens


def summarize(results: list[PromptResult], k: int) -> dict:
    """Means over prompts: pass@1, and with k > 1 pass@k and maj@k; each reward's mean; the completion length."""
    if not results:
        return {}
    out = {"pass@1": _mean([pass_at_k(len(r.correct), sum(r.correct), 1) for r in results])}
    if k > 1:
        out[f"pass@{k}"] = _mean([pass_at_k(len(r.correct), sum(r.correct), k) for r in results])
        out[f"maj@{k}"] = _mean([float(majority_correct(r.answers, r.correct)) for r in results])
    for name in results[0].rewards:
        scores = [s for r in results for s in r.rewards[name] if s is not None]
        out[f"reward/{name}"] = _mean(scores) if scores else None
    out["completion_length"] = _mean([n for r in results for n in r.lengths])
    out["prompts"] = len(results)
    return out


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 6) if values else 0.0
