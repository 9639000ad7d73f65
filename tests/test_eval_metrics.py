"""pass@k, maj@k and their means (r1exp/evaluation/metrics.py), as a specification: the estimator against the
definition (the chance that k samples drawn without replacement hold a correct one), by enumeration."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1exp.evaluation.metrics import PromptResult, majority_correct, pass_at_k, summarize


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_the_chance_that_k_draws_hold_a_correct_sample(nck):
    n, c, k = nck
    samples = [True] * c + [False] * (n - c)
    draws = list(combinations(range(n), k))
    exact = sum(any(samples[i] for i in d) for d in draws) / len(draws)
    assert pass_at_k(n, c, k) == pytest.approx(exact)


def test_pass_at_1_is_the_share_correct():
    assert pass_at_k(4, 1, 1) == 0.25 and pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0


@pytest.mark.parametrize("n, c, k", [(3, 4, 1), (3, 1, 4), (3, 1, 0)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


@pytest.mark.parametrize("answers, correct, expected", [
    (["7", "7", "8"], [True, True, False], True),
    (["8", "8", "7"], [False, False, True], False),
    (["7", "8"], [True, False], True),             # a tie: the first sample's answer among the tied
    (["8", "7"], [False, True], False),
    ([None, None, "7"], [False, False, True], True),   # no answer does not vote
    ([None, None], [False, False], False),
])
def test_majority_vote(answers, correct, expected):
    assert majority_correct(answers, correct) is expected


def test_summary_means_over_prompts():
    results = [PromptResult([True, False], ["7", "8"], {"accuracy": [1.0, 0.0]}, [10, 20]),
               PromptResult([False, False], ["1", None], {"accuracy": [0.0, 0.0]}, [30, 40])]
    s = summarize(results, k=2)
    assert s["pass@1"] == 0.25 and s["pass@2"] == 0.5 and s["maj@2"] == 0.5
    assert s["reward/accuracy"] == 0.25 and s["completion_length"] == 25 and s["prompts"] == 2
