"""The reward sanity check: before training, every selected reward must tell a good completion from a bad one.

For a sample of the data (checks.reward_sanity_samples rows), each reward scores pairs of completions built from
the row's gold answer, the way TRL will call it (chat-message completions, the row's columns, approximate token
ids). What "good" and "bad" mean depends on the reward, so each reward has a probe (PROBES, chosen by the library
table or a reward's `sanity_probe`): a correctness reward must prefer the gold answer to another row's answer,
both well formatted; a format reward must prefer the well-formatted gold answer to the same answer unformatted
(it cannot be asked to tell right from wrong); and so on. "Well formatted" is in the tags the reward is given
(`reward.<label>.tags`, which follows data.tags), else the data's (r1exp.data.tags). A reward that raises, returns
something TRL cannot use, has no opinion on any row, or does not prefer the good completion in most rows stops the
run (exit 2) with a message naming the reward, an example and the likely cause.
"""

from __future__ import annotations

import inspect
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

from r1exp.data.tags import DEFAULT, Tags, configured
from r1exp.errors import Problem
from r1exp.rewards.guard import Interrupted, checked_scores, time_limit
from r1exp.rewards.text import approximate_ids, normalize, to_number

SLOW_NOTE_S = 2.0   # a reward slower than this on the sanity check's completions is named (the dry run waits for it)

MIN_PREFERRED_SHARE = 0.5   # the good completion must score higher in at least this share of rows
PAD = "Let me check that once more, carefully."


@dataclass(frozen=True)
class Case:
    """One data row, its gold answer and reasoning, and a wrong answer taken from another row."""

    row: dict
    gold: str
    reasoning: str
    wrong: str


def well_formed(answer: str, reasoning: str = "", tags: Tags | None = None) -> str:
    return (tags or DEFAULT).wrap(answer, reasoning or "Let me work it out.")


@dataclass(frozen=True)
class Probe:
    good: Callable[[Case, dict, Tags], str]   # (case, reward params, its tags) -> the completion it should prefer
    bad: Callable[[Case, dict, Tags], str]
    good_is: str                        # words for the message ({format}: the tags' format, <think>...<answer>...)
    bad_is: str
    cause: str                          # the likely cause when the reward does not prefer `good`


def _overlong(case: Case, params: dict, tags: Tags) -> str:
    words = 2 * int(params.get("max_length") or 1024) + 10
    return well_formed(case.gold, " ".join(["step"] * words), tags)


PROBES: dict[str, Probe] = {
    "answer": Probe(
        good=lambda c, p, t: well_formed(c.gold, c.reasoning, t),
        bad=lambda c, p, t: well_formed(c.wrong, c.reasoning, t),
        good_is="the gold answer", bad_is="a wrong answer (another row's), both well formatted",
        cause="it scores a right and a wrong answer alike: it may read the gold answer from the wrong column, or "
              "fail to parse answers written like the gold one"),
    "format": Probe(
        good=lambda c, p, t: well_formed(c.gold, c.reasoning, t),
        bad=lambda c, p, t: f"{c.reasoning} so the answer is {c.gold}",
        good_is="the gold answer in {format}", bad_is="the same answer without tags",
        cause="it does not reward the {format} format: check its pattern, and that its tags are the data's "
              "(reward.<label>.tags, data.tags)"),
    "steps": Probe(
        good=lambda c, p, t: well_formed(c.gold, f"Step 1: read the question.\nStep 2: {c.reasoning or 'compute'}.\n"
                                                 f"Step 3: check the result.", t),
        bad=lambda c, p, t: well_formed(c.gold, c.gold, t),
        good_is="an answer reasoned in numbered steps", bad_is="the same answer with no steps",
        cause="it does not count reasoning steps: check its step markers"),
    "repetition": Probe(
        good=lambda c, p, t: well_formed(c.gold, c.reasoning, t),
        bad=lambda c, p, t: well_formed(c.gold, " ".join(["so the answer is", c.gold] * 12), t),
        good_is="the gold answer", bad_is="the gold answer after a phrase repeated 12 times",
        cause="it does not penalize repetition: check its n-gram size and penalty"),
    "brevity": Probe(
        good=lambda c, p, t: well_formed(c.gold, c.reasoning, t),
        bad=lambda c, p, t: well_formed(c.gold, " ".join([c.reasoning, *[PAD] * 12]), t),
        good_is="a short right answer", bad_is="the same right answer after much longer reasoning",
        cause="it does not prefer the shorter of two right answers: it may read the gold answer from the wrong "
              "column or fail to parse it"),
    "overlong": Probe(
        good=lambda c, p, t: well_formed(c.gold, "ok", t), bad=_overlong,
        good_is="a short answer", bad_is="an answer twice max_length long",
        cause="it does not punish over-long completions: check max_length"),
}


@dataclass
class Verdict:
    label: str
    probe: str
    tags: Tags = DEFAULT
    good_mean: float | None = None
    bad_mean: float | None = None
    preferred: float | None = None   # share of rows where good scored higher
    problem: Problem | None = None


@dataclass
class SanityReport:
    verdicts: list = field(default_factory=list)
    skipped: str = ""   # why the check did not run, if it did not
    data_problem: Problem | None = None

    @property
    def problems(self) -> list[Problem]:
        found = [self.data_problem] if self.data_problem else []
        return found + [v.problem for v in self.verdicts if v.problem]


def cases_of(data_cfg, n: int) -> list[Case]:
    """n rows of the data with their gold answers, and for each a wrong answer from another row."""
    from r1exp import data

    examples = data.examples(data_cfg, n)
    system = data_cfg.get("system_prompt")
    cases = []
    for i, ex in enumerate(examples):
        others = examples[i + 1:] + examples[:i]
        wrong = next((o.answer for o in others if _differs(o.answer, ex.answer)), None)
        cases.append(Case(data.row_of(ex, system), ex.answer, ex.reasoning, wrong or _perturbed(ex.answer)))
    return cases


def check_rewards(cfg) -> SanityReport:
    """Score every selected reward on its probe over a sample of the data (checks.reward_sanity_samples rows)."""
    from r1exp.data import FieldError
    from r1exp.rewards import probe_of

    n = int((cfg.get("checks") or {}).get("reward_sanity_samples", 16))
    report = SanityReport()
    try:
        cases = cases_of(cfg.data, n)
    except (FieldError, OSError, ValueError) as e:
        report.data_problem = Problem("data", cfg.data.get("path") or cfg.data.name,
                                      f"reward sanity check: cannot read the data: {e}",
                                      "fix data.path or the field mapping (data.prompt_field, data.answer_field, "
                                      "data.keep_fields)", rule="reward.sanity")
        return report
    if not cases:
        report.skipped = "the data has no rows"
        return report
    state = SimpleNamespace(global_step=0, epoch=0.0, max_steps=int(cfg.trainer.get("max_steps", -1) or -1))
    budget = (cfg.get("checks") or {}).get("reward_time_budget_s")   # a sanity call scores about a step's worth
    data_tags = Tags.of(configured(cfg.data.get("tags")))
    for label, entry in cfg.reward.items():
        probe = probe_of(entry)
        if probe == "none":
            continue
        report.verdicts.append(_judge(str(label), entry, probe, cases, state, data_tags, budget))
    return report


def reward_tags(params: dict, data_tags: Tags) -> Tags:
    """The tags a reward looks for: its own `tags` when it has the parameter (the shipped YAMLs set it to the data's),
    else the data's: a user's reward is asked to tell the run's format apart."""
    return Tags.of(params["tags"]) if params.get("tags") is not None else data_tags


def dry_run_sanity(cfg) -> SanityReport:
    """The check as a dry run does it: only when enabled and the data is local (generated or a local file)."""
    from r1exp import data

    if not (cfg.get("checks") or {}).get("reward_sanity", True):
        return SanityReport(skipped="checks.reward_sanity=false")
    if not data.is_local(cfg.data):
        return SanityReport(skipped=f"data.path={cfg.data.get('path')} is not local: checked when the run starts")
    return check_rewards(cfg)


def _judge(label: str, entry, probe_name: str, cases: list[Case], state, data_tags: Tags = DEFAULT,
           budget_s: float | None = None) -> Verdict:
    from r1exp.rewards import bound_reward, params_of

    probe = PROBES[probe_name]
    params = params_of(entry)
    tags = reward_tags(params, data_tags)
    verdict = Verdict(label, probe_name, tags)
    pairs = [(probe.good(c, params, tags), probe.bad(c, params, tags)) for c in cases]
    completions = [[{"role": "assistant", "content": text}] for pair in pairs for text in pair]
    rows = [c.row for c in cases for _ in range(2)]
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    fn = bound_reward(entry)
    start = time.perf_counter()
    try:
        with time_limit(budget_s):
            raw = fn(prompts=[r["prompt"] for r in rows], completions=completions,
                     completion_ids=[approximate_ids(c[0]["content"]) for c in completions], trainer_state=state,
                     log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None, **columns)
    except Interrupted:
        verdict.problem = Problem(f"reward.{label}", label, f"it was still scoring {len(completions)} completions "
                                  f"after {budget_s:g} s (checks.reward_time_budget_s): a step of training would "
                                  "wait as long, and the run stops after 3 such steps",
                                  "make the reward faster (cache, batch, no network or subprocess per completion), "
                                  "or raise checks.reward_time_budget_s (null: no budget)", rule="reward.sanity")
        return verdict
    except Exception as e:  # noqa: BLE001 - any error is the reward's, reported with its likely cause
        verdict.problem = _problem(label, entry, f"it raised {type(e).__name__}: {e}", _raise_cause(e, fn, columns),
                                   cases[0], pairs[0], None)
        return verdict
    seconds = time.perf_counter() - start
    if seconds > SLOW_NOTE_S:
        print(f"r1exp: reward {label!r} took {seconds:.1f} s to score {len(completions)} completions in the reward "
              "sanity check; training pays that on every step's completions", file=sys.stderr)
    try:
        scores = checked_scores(raw, len(completions))
    except (TypeError, ValueError) as e:
        verdict.problem = _problem(label, entry, f"it {e}", "return one float (or None) per completion",
                                   cases[0], pairs[0], None)
        return verdict
    good, bad = scores[0::2], scores[1::2]
    both = [(g, b) for g, b in zip(good, bad) if g is not None and b is not None]
    if not both:
        verdict.problem = _problem(
            label, entry, f"it gave no score (None) to any of {len(cases)} rows",
            f"the gold answers may not parse (e.g. {cases[0].gold!r}), or it reads another column than the data has "
            f"({', '.join(sorted(columns))})", cases[0], pairs[0], (good[0], bad[0]))
        return verdict
    verdict.good_mean = sum(g for g, _ in both) / len(both)
    verdict.bad_mean = sum(b for _, b in both) / len(both)
    verdict.preferred = sum(g > b for g, b in both) / len(both)
    if verdict.preferred < MIN_PREFERRED_SHARE or verdict.good_mean <= verdict.bad_mean:
        i = next(i for i, (g, b) in enumerate(zip(good, bad)) if g is not None and b is not None and g <= b)
        verdict.problem = _problem(
            label, entry, f"it cannot tell {_words(probe.good_is, tags)} from {probe.bad_is}: it preferred the first "
                          f"in {verdict.preferred:.0%} of {len(both)} rows (mean {verdict.good_mean:.3g} vs "
                          f"{verdict.bad_mean:.3g})",
            _words(probe.cause, tags) + f" (the data's columns: {', '.join(sorted(columns))})", cases[i], pairs[i],
            (good[i], bad[i]))
    return verdict


def _words(text: str, tags: Tags) -> str:
    return text.replace("{format}", tags.describe())


def _problem(label, entry, why, cause, case: Case, pair, scores) -> Problem:
    g, b = scores if scores else ("-", "-")
    question = next((m["content"] for m in reversed(case.row["prompt"]) if m.get("role") == "user"), "")
    example = (f"example: question {question[:160]!r}, gold answer {case.gold!r}\n"
               f"    scored {g} for {pair[0][:160]!r}\n    scored {b} for {pair[1][:160]!r}")
    target = entry.get("_target_") or entry.get("name")
    return Problem(f"reward.{label}", target, f"reward sanity check: {why}",
                   f"{cause}\n  {example}\n  (checks.reward_sanity=false skips this check)", rule="reward.sanity")


def _raise_cause(error: Exception, fn, columns: dict) -> str:
    text = str(error)
    have = ", ".join(sorted(columns))
    if isinstance(error, KeyError) or (isinstance(error, TypeError) and ("argument" in text)):
        return (f"likely a column mismatch: the data's columns are {have}; the reward reads "
                f"{_params(fn) or 'other names'}")
    return f"a bug in the reward, or data it does not expect (the data's columns: {have})"


def _params(fn) -> str:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return ""
    return ", ".join(p for p in sig.parameters if p not in ("prompts", "completions", "kwargs", "_"))


def _differs(a: str, b: str) -> bool:
    na, nb = to_number(a), to_number(b)
    if na is not None and nb is not None:
        return na != nb
    return normalize(a) != normalize(b)


def _perturbed(answer: str) -> str:
    number = to_number(answer)
    if number is not None:
        return str(int(number) + 1) if number == int(number) else str(number + 1)
    return f"not {answer}"


def render(report: SanityReport) -> str:
    """One line per reward for the dry-run report."""
    if report.skipped or report.data_problem:
        return f"reward sanity check: {'skipped (' + report.skipped + ')' if report.skipped else 'FAILED'}"
    lines = ["reward sanity check (good vs bad completion, mean score):"]
    for v in report.verdicts:
        if v.problem is None:
            lines.append(f"  ok      {v.label:<16} {v.good_mean:+.3f} vs {v.bad_mean:+.3f}  "
                         f"({_words(PROBES[v.probe].good_is, v.tags)} preferred in {v.preferred:.0%} of rows)")
        else:
            lines.append(f"  FAILED  {v.label:<16} (see above)")
    return "\n".join(lines)
