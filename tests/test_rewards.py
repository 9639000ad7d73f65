"""The reward library, hand-worked: each row is a completion, its gold answer and the score a person works out.

Also: rewards accept both completion shapes TRL passes, the failure guard (a reward that raises on one completion
costs that completion's score, not the run), building rewards from the config, and the validation rules for
reward configs (r1exp.rewards.rules).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1exp.config.compose import compose
from r1exp.machine.facts import detect
from r1exp.checks.validate import validate
from r1exp.rewards import build_rewards
from r1exp.rewards.correctness import accuracy, exact_match, numeric_match
from r1exp.rewards.countdown import countdown
from r1exp.rewards.guard import GuardedReward, RewardFailureError
from r1exp.rewards.length import cosine, length, overlong
from r1exp.rewards.library import SPECS
from r1exp.rewards.mathcheck import is_correct
from r1exp.rewards.shape import format as format_reward
from r1exp.rewards.shape import reasoning_steps, repetition, tag_count


def chat(text: str) -> list[dict]:
    """A completion the way TRL passes it for chat prompts."""
    return [{"role": "assistant", "content": text}]


def ids(n: int) -> list[int]:
    return list(range(n))


# --- answer rewards: (completion, gold, expected) ----------------------------------------------------------------

ACCURACY = [
    ("<think>3 + 4</think><answer>7</answer>", "7", 1.0),
    ("<answer>7.0</answer>", "7", 1.0),                 # math-verify: same number
    ("<answer>1/2</answer>", "0.5", 1.0),
    ("<answer>\\frac{1}{2}</answer>", "0.5", 1.0),
    ("<answer>8</answer>", "7", 0.0),
    ("3 + 4 is 7", "7", 1.0),                           # no tag: the last number
    ("no answer here", "7", 0.0),
    ("<answer>7</answer>", "", None),                    # gold cannot be parsed: no opinion
    ("<answer>7</answer>", "banana", None),
]

EXACT = [
    ("<answer> Paris. </answer>", "paris", 1.0),
    ("<answer>$7$</answer>", "7", 1.0),
    ("<answer>7.0</answer>", "7", 0.0),                  # text, not numbers
    ("<answer>New  York</answer>", "new york", 1.0),
    ("<answer>7</answer>", "", None),
]

NUMERIC = [
    ("<answer>1,000</answer>", "1000", {}, 1.0),
    ("<answer>$1000</answer>", "1,000", {}, 1.0),
    ("<answer>7.0</answer>", "7", {}, 1.0),
    ("<answer>7.01</answer>", "7", {}, 0.0),
    ("<answer>7.01</answer>", "7", {"tolerance": 0.01}, 1.0),
    ("<answer>seven</answer>", "7", {}, 0.0),
    ("<answer>7</answer>", "seven", {}, None),
]


@pytest.mark.parametrize("text,gold,expected", ACCURACY)
def test_accuracy(text, gold, expected):
    assert accuracy(completions=[chat(text)], answer=[gold]) == [expected]


@pytest.mark.parametrize("text,gold,expected", EXACT)
def test_exact_match(text, gold, expected):
    assert exact_match(completions=[chat(text)], answer=[gold]) == [expected]


@pytest.mark.parametrize("text,gold,params,expected", NUMERIC)
def test_numeric_match(text, gold, params, expected):
    assert numeric_match(completions=[chat(text)], answer=[gold], **params) == [expected]


@settings(max_examples=40, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6))
def test_integer_shortcut_agrees_with_math_verify(a, b):
    from math_verify import parse, verify

    expected = verify(parse(str(a), parsing_timeout=None), parse(str(b), parsing_timeout=None), timeout_seconds=None)
    assert is_correct(str(b), str(a)) == expected


# --- countdown: numbers [3, 4, 5], target 35 unless the row says otherwise ----------------------------------------

COUNTDOWN = [
    ("<answer>(3 + 4) * 5</answer>", [3, 4, 5], 35, 1.0),
    ("<answer>(3+4)*5 = 35</answer>", [3, 4, 5], 35, 1.0),
    ("<answer>5 * (4 + 3)</answer>", [3, 4, 5], 35, 1.0),
    ("<answer>(3 + 4) * 5</answer>", "[3, 4, 5]", "35", 1.0),     # columns read from a CSV are text
    ("<answer>(3 + 4) * 5 * 1</answer>", [3, 4, 5], 35, 0.0),     # a number that was not given
    ("<answer>7 * 5</answer>", [3, 4, 5], 35, 0.0),               # numbers not used
    ("<answer>35</answer>", [3, 4, 5], 35, 0.0),
    ("<answer>3 ** 4 - 5</answer>", [3, 4, 5], 76, 0.0),          # only + - * /
    ("<answer>__import__('os')</answer>", [3, 4, 5], 35, 0.0),
    ("<answer>3 / (4 - 4)</answer>", [3, 4, 4], 1, 0.0),          # division by zero is just wrong
    ("(3 + 4) * 5", [3, 4, 5], 35, 0.0),                           # no <answer>
    ("<answer>(3 + 4) * 5</answer>", [3, 4, 5], None, None),
]


@pytest.mark.parametrize("text,numbers,target,expected", COUNTDOWN)
def test_countdown(text, numbers, target, expected):
    assert countdown(completions=[chat(text)], numbers=[numbers], target=[target]) == [expected]


# --- shape rewards: (completion, expected) -----------------------------------------------------------------------

FORMAT = [
    ("<think>a</think><answer>b</answer>", 1.0),
    ("  <think>a\nb</think>\n<answer>b</answer>\n", 1.0),
    ("<think>a</think>", 0.0),
    ("<answer>b</answer><think>a</think>", 0.0),
    ("<think>a</think><answer>b</answer> and more", 0.0),
]

TAG_COUNT = [
    ("<think>a</think><answer>b</answer>", 1.0),
    ("<think>a</think>", 0.5),
    ("<think><think>a</think>", 0.25),                  # <think> twice earns nothing
    ("", 0.0),
]

STEPS = [
    ("<think>Step 1: a\nStep 2: b\nStep 3: c</think><answer>1</answer>", 1.0),
    ("<think>First, a. Then, b.</think><answer>1</answer>", 2 / 3),
    ("<think>just do it</think><answer>1</answer>", 0.0),
    ("1. a\n2. b\n3. c\n4. d", 1.0),                      # capped at 1
]

REPETITION = [
    ("a b c d e", {}, 0.0),
    ("a b a b a b", {}, -0.5),                            # 3-grams aba, bab, aba, bab: half are repeats
    ("a b", {}, 0.0),                                     # shorter than one n-gram
    ("x x x x x", {"max_penalty": -2.0}, -2.0 * 2 / 3),
    ("a b a b", {"ngram": 2}, -1 / 3),
]


@pytest.mark.parametrize("text,expected", FORMAT)
def test_format(text, expected):
    assert format_reward(completions=[chat(text)]) == [expected]


@pytest.mark.parametrize("text,expected", TAG_COUNT)
def test_tag_count(text, expected):
    assert tag_count(completions=[chat(text)]) == [expected]


@pytest.mark.parametrize("text,expected", STEPS)
def test_reasoning_steps(text, expected):
    assert reasoning_steps(completions=[chat(text)]) == [pytest.approx(expected)]


@pytest.mark.parametrize("text,params,expected", REPETITION)
def test_repetition(text, params, expected):
    assert repetition(completions=[chat(text)], **params) == [pytest.approx(expected)]


def test_repetition_refuses_a_positive_penalty():
    with pytest.raises(ValueError, match="max_penalty"):
        repetition(completions=[chat("a b c")], max_penalty=0.5)


# --- length rewards: lengths given as completion_ids, as TRL passes them ---------------------------------------

OVERLONG = [  # max_length 10, cache 4: free up to 6 tokens, -1 from 10
    (6, {"cache_length": 4}, 0.0),
    (7, {"cache_length": 4}, -0.25),
    (8, {"cache_length": 4}, -0.5),
    (10, {"cache_length": 4}, -1.0),
    (11, {"cache_length": 4}, -1.0),
    (9, {}, -0.5),                                        # default cache: a fifth of max_length = 2
]

COSINE = [  # max_length 10: right answers 1.0 -> 0.5, wrong ones -1.0 -> -0.5 as the length grows
    ("7", 0, 1.0), ("7", 5, 0.75), ("7", 10, 0.5), ("7", 20, 0.5),
    ("8", 0, -1.0), ("8", 5, -0.75), ("8", 10, -0.5),
]


@pytest.mark.parametrize("size,params,expected", OVERLONG)
def test_overlong(size, params, expected):
    assert overlong(completions=[chat("x")], completion_ids=[ids(size)], max_length=10, **params) == [expected]


@pytest.mark.parametrize("guess,size,expected", COSINE)
def test_cosine(guess, size, expected):
    scores = cosine(completions=[chat(f"<answer>{guess}</answer>")], answer=["7"], completion_ids=[ids(size)],
                    max_length=10)
    assert scores == [pytest.approx(expected)]


def test_cosine_has_no_opinion_without_a_gold_answer():
    assert cosine(completions=[chat("<answer>7</answer>")], answer=[""], completion_ids=[ids(3)]) == [None]


def test_length_reward_is_kimi_within_each_prompt():
    # prompt A: right answers of 2 and 6 tokens and a wrong one of 4 (min 2, max 6); prompt B: equal lengths
    prompts = ["A", "A", "A", "A", "B", "B"]
    guesses = ["7", "7", "8", "8", "7", "7"]
    sizes = [2, 6, 4, 2, 5, 5]
    scores = length(prompts=prompts, completions=[chat(f"<answer>{g}</answer>") for g in guesses],
                    answer=["7"] * 6, completion_ids=[ids(n) for n in sizes])
    # lam = 0.5 - (len - 2) / 4: 0.5, -0.5, 0.0, 0.5 -> a wrong answer never earns more than 0
    assert scores == [0.5, -0.5, 0.0, 0.0, 0.0, 0.0]


def test_length_reward_estimates_lengths_without_ids():
    short, long = "<answer>7</answer>", "<think>" + "word " * 50 + "</think><answer>7</answer>"
    assert length(prompts=["A", "A"], completions=[chat(short), chat(long)], answer=["7", "7"]) == [0.5, -0.5]


# --- every library reward: both completion shapes, and the columns it declares -------------------------------------

@pytest.mark.parametrize("name", sorted(SPECS))
def test_library_rewards_score_strings_and_chat_messages_alike(name):
    spec = SPECS[name]
    text = "<think>Step 1: 3 + 4</think><answer>(3 + 4) * 5</answer>"
    columns = {"answer": ["35"], "numbers": [[3, 4, 5]], "target": [35]}
    kwargs = {k: v for k, v in columns.items() if k in spec.needs}
    as_text = spec.fn(prompts=["p"], completions=[text], completion_ids=[ids(12)], **kwargs)
    as_chat = spec.fn(prompts=["p"], completions=[chat(text)], completion_ids=[ids(12)], **kwargs)
    assert as_text == as_chat and len(as_text) == 1


@pytest.mark.parametrize("name", sorted(SPECS))
def test_library_rewards_declare_the_columns_they_read(name):
    import inspect

    spec = SPECS[name]
    params = inspect.signature(spec.fn).parameters
    assert all(column in params for column in spec.needs)
    required = [n for n, p in params.items() if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    assert set(required) - {"completions"} == set(spec.needs)


# --- the guard: one bad completion costs its score, not the run ----------------------------------------------------

def explode_on_boom(completions, **_):
    return [1.0 if "boom" not in c[0]["content"] else 1 / 0 for c in completions]


def test_guard_scores_the_others_when_one_completion_raises(capsys):
    guarded = GuardedReward(explode_on_boom, "fragile")
    scores = guarded(prompts=["p"] * 3, completions=[chat("ok"), chat("boom"), chat("fine")], answer=["1"] * 3)
    assert scores == [1.0, None, 1.0]
    assert (guarded.stats.failed, guarded.stats.scored) == (1, 3)
    failure = guarded.stats.pending[0]
    assert (failure.reward, failure.completion) == ("fragile", "boom") and "ZeroDivisionError" in failure.error
    assert "'fragile' raised ZeroDivisionError" in capsys.readouterr().err


def test_guard_treats_an_unusable_output_as_failures():
    guarded = GuardedReward(lambda completions, **_: [1.0], "short")
    assert guarded(prompts=["p", "p"], completions=[chat("a"), chat("b")]) == [1.0, 1.0]  # one at a time works
    guarded = GuardedReward(lambda completions, **_: ["high"] * len(completions), "texty")
    assert guarded(prompts=["p", "p"], completions=[chat("a"), chat("b")]) == [None, None]
    assert guarded.stats.failed == 2


def test_guard_stops_the_run_past_the_failure_rate():
    guarded = GuardedReward(explode_on_boom, "fragile", max_failure_rate=0.25)
    guarded(prompts=["p"] * 4, completions=[chat("boom"), chat("a"), chat("b"), chat("c")])  # 25%: not past it
    with pytest.raises(RewardFailureError, match=r"'fragile' raised on 3 of 8 completions.*max_reward_failure_rate"):
        guarded(prompts=["p"] * 4, completions=[chat("boom"), chat("a"), chat("boom!"), chat("c")])


def test_guard_times_calls_and_hands_over_a_window():
    guarded = GuardedReward(explode_on_boom, "timed")
    guarded(prompts=["p"], completions=[chat("boom")])
    failed, seconds = guarded.stats.take_window()
    assert failed == 1 and seconds > 0
    assert guarded.stats.take_window() == (0, 0.0) and guarded.stats.failed == 1


# --- building from the config ------------------------------------------------------------------------------------

def test_build_rewards_names_weights_and_binds_parameters():
    cfg = compose(["reward=[accuracy,cosine,custom]", "reward.cosine.weight=0.5", "trainer.max_completion_length=10"])
    funcs, weights = build_rewards(cfg.reward)
    assert [f.__name__ for f in funcs] == ["accuracy", "cosine", "custom"]
    assert weights == [1.0, 0.5, 1.0]
    completion = [chat("<answer>7</answer>")]
    assert funcs[1](prompts=["p"], completions=completion, answer=["7"], completion_ids=[ids(10)]) == [0.5]
    assert funcs[2](prompts=["p"], completions=[chat("<answer>7.05</answer>")], answer=["7"]) == [1.0]  # tolerance


# --- validation of reward configs: (overrides, rule, words in the message) ----------------------------------------

def no_kwargs_reward(completions, answer):
    return [0.0 for _ in completions]


def needs_solution(completions, solution, **kwargs):
    return [0.0 for _ in completions]


not_a_function = 3

REWARD_CONFIG_MISTAKES = [
    (["reward=[countdown]"], "reward.columns", "reads the columns numbers, target"),
    (["+reward.mine._target_=tests.test_rewards.needs_solution"], "reward.columns", "reads the column solution"),
    (["+reward.mine._target_=no_such_package.rewards.fn"], "reward.target", "No module named"),
    (["+reward.mine._target_=tests.test_rewards.missing_fn"], "reward.target", "no attribute 'missing_fn'"),
    (["+reward.mine._target_=tests.test_rewards.not_a_function"], "reward.target", "not a function"),
    (["+reward.mine._target_=tests.test_rewards.no_kwargs_reward"], "reward.target", "does not accept **kwargs"),
    (["+reward.accuracy.max_lenght=3"], "reward.params", "has no parameter 'max_lenght'"),
    (["+reward.format.sanity_probe=vibes"], "reward.params", "not a sanity probe"),
    (["checks.max_reward_failure_rate=1.5"], "checks.reward", "between 0 and 1"),
    (["checks.reward_sanity_samples=1"], "checks.reward", "at least 2 rows"),
    (["data=jsonl"], "data.source", "has no path"),
    (["data=jsonl", "data.path=./data.jsonl", "data.format=xml"], "data.source", "not a known file format"),
    (["data=jsonl", "data.path=org/name", "data.answer_format=latex"], "data.source", "not a known answer format"),
]


def _reward_problems(overrides):
    """Problems from the rewards' and the data's rows (r1exp.rewards.rules, r1exp.data.rules)."""
    from r1exp.data.rules import RULES as DATA_RULES
    from r1exp.rewards.rules import RULES as REWARD_RULES

    ours = {r.id for r in REWARD_RULES + DATA_RULES} - {"reward.name", "reward.weight", "data.path", "data.hub"}
    return [p for p in validate(compose(overrides), detect()) if p.rule in ours]


@pytest.mark.parametrize("overrides,rule,words", REWARD_CONFIG_MISTAKES)
def test_reward_config_mistakes_are_caught_before_the_run(overrides, rule, words):
    problems = _reward_problems(overrides)
    assert [p.rule for p in problems] == [rule], [p.render() for p in problems]
    assert words in problems[0].render()


@pytest.mark.parametrize("overrides", [
    [],
    ["reward=[accuracy,format,exact,numeric,tag_count,reasoning_steps,repetition,length,cosine,overlong,custom]"],
    ["data=countdown", "reward=[countdown,format,tag_count]"],
    ["data=gsm8k"],
    ["+reward.mine._target_=tests.test_rewards.needs_solution", "data=jsonl", "data.path=org/name",
     "data.keep_fields=[solution]"],
])
def test_good_reward_configs_pass(overrides):
    assert _reward_problems(overrides) == []
