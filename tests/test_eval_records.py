"""The held-out evaluation as its readers show it, from synthetic run folders (run.json "eval", metrics.jsonl eval/
rows, in the shape r1exp.evaluation writes): `python -m r1exp.runs` and `compare`, a run's closing summary, and a
sweep's summary.md / summary.csv / summary.png and Optuna objective. A damaged eval block is shown as `?`, never a
traceback; a run made before held-out evaluation (no block) reads as it did."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
from pathlib import Path

import pytest

from conftest import run_cli
from r1exp import runs
from r1exp.observe import summary
from r1exp.scale import sweep

EVAL = {
    "set": {"source": "data=arithmetic (held out: seed 1042)", "prompts": 64, "k": 4, "temperature": 0.0,
            "max_tokens": 24},
    "baseline": {"step": 0, "pass@1": 0.22, "pass@4": 0.41, "maj@4": 0.25, "reward/accuracy": 0.22,
                 "reward/format": 0.6, "completion_length": 18.2, "prompts": 64, "seconds": 1.9},
    "steps": [{"step": 25, "pass@1": 0.6, "pass@4": 0.8, "maj@4": 0.62, "reward/accuracy": 0.6, "prompts": 64}],
    "final": {"step": 50, "pass@1": 0.91, "pass@4": 0.97, "maj@4": 0.92, "reward/accuracy": 0.91,
              "completion_length": 16.0, "prompts": 64, "seconds": 1.7},
}
K1 = {"set": {"source": "data=arithmetic (held out: seed 1042)", "prompts": 64, "k": 1},
      "baseline": {"step": 0, "pass@1": 0.3, "prompts": 64}, "final": {"step": 50, "pass@1": 0.5, "prompts": 64}}


def eval_block(drop=(), **changes) -> dict:
    """EVAL without the parts in `drop`, with `changes` (e.g. final={...})."""
    block = copy.deepcopy(EVAL)
    for key in drop:
        block.pop(key)
    block.update(changes)
    return block


def final_at(pass1: float) -> dict:
    return eval_block(final={**EVAL["final"], "pass@1": pass1})


# Damaged blocks: each must show as `?` wherever the eval is shown.
MALFORMED = {
    "a list": [1, 2],
    "a string": "pass@1 0.9",
    "final not an object": eval_block(final="0.91"),
    "pass@1 a string": eval_block(final={"step": 50, "pass@1": "0.91"}),
    "pass@1 missing": eval_block(baseline={"step": 0, "pass@4": 0.4}),
    "pass@1 NaN": eval_block(final={"step": 50, "pass@1": math.nan}),
    "pass@1 a boolean": eval_block(final={"step": 50, "pass@1": True}),
    "steps not a list": eval_block(steps={"25": 0.6}),
    "a step without pass@1": eval_block(steps=[{"step": 25}]),
    "set not an object": eval_block(set=["arithmetic"]),
}


def make_run(folder: Path, eval_=None, status="ok", rewards=(0.2, 0.5, 0.9, 1.2), lr=1e-3, eval_rows=True,
             overrides=(), **metrics) -> Path:
    """A run folder as r1exp leaves it: run.json (with `eval_` as its eval block unless None), metrics.jsonl (steps,
    and the evaluations as eval/ rows when eval_rows) and .hydra/overrides.yaml."""
    folder.mkdir(parents=True)
    manifest = {"status": status, "exit_code": 0 if status == "ok" else 1, "start": "2026-11-25T10:31:07+00:00",
                "config": {"name": "default", "trainer": {"learning_rate": lr, "max_steps": 50}},
                "metrics": {"reward_first10": rewards[0], "reward_last10": rewards[-1], **metrics}}
    if eval_ is not None:
        manifest["eval"] = eval_
    (folder / "run.json").write_text(json.dumps(manifest))
    rows = [{"step": i + 1, "reward": r, "rewards/accuracy/mean": r / 2} for i, r in enumerate(rewards)]
    if eval_rows and isinstance(eval_, dict) and not isinstance(summary.held_out(manifest).problem, str):
        points = [p for p in (eval_.get("baseline"), *eval_.get("steps", []), eval_.get("final")) if p]
        rows += [{"step": p["step"], **{f"eval/{k}": v for k, v in p.items() if k not in ("step", "prompts")}}
                 for p in points]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return folder


def runs_cli(*args, cwd=None):
    return run_cli(list(args), cwd or "", module="r1exp.runs", timeout=120, env={"COLUMNS": "250"}, cwd=cwd)


# --- reading the block ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block, trend", [
    (None, "-"),                                                     # a run made before held-out evaluation
    (EVAL, "pass@1 0.22 -> 0.91"),
    (K1, "pass@1 0.30 -> 0.50"),
    (eval_block(drop=["final"]), "pass@1 0.22 (baseline)"),          # the run failed before its final evaluation
    (eval_block(drop=["baseline"]), "pass@1 0.91 (final)"),          # the baseline was switched off
    (eval_block(baseline=None, final=None), "-"),                    # on, but nothing ran
    (eval_block(drop=["baseline", "final", "steps"]), "-"),
    *((block, "?") for block in MALFORMED.values()),
], ids=["no eval", "both", "k=1", "no final", "no baseline", "nulls", "empty", *MALFORMED])
def test_the_trend_of_each_shape_of_block(block, trend):
    manifest = {} if block is None else {"eval": block}
    assert summary.held_out_trend(summary.held_out(manifest)) == trend


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_block_says_why(name):
    held = summary.held_out({"eval": MALFORMED[name]})
    assert held.problem and held.baseline is None and held.final is None


def test_the_points_come_from_the_eval_rows_whatever_rows_share_their_step():
    rows = [{"step": 0, "eval/pass@1": 0.2}, {"step": 1, "reward": 0.3}, {"step": 2, "eval/pass@1": 0.5},
            {"step": 2, "reward": 0.4}, {"step": 3, "eval/pass@1": "x"}]   # as r1exp logs them: eval, then the step
    assert summary.held_out_points(rows, summary.held_out({"eval": EVAL})) == [(0, 0.2), (2, 0.5)]
    assert summary.held_out_points([], summary.held_out({"eval": EVAL})) == [(0, 0.22), (25, 0.6), (50, 0.91)]
    assert summary.held_out_points([], summary.held_out({"eval": MALFORMED["a list"]})) == []


# --- the closing summary -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block, status, line", [
    (EVAL, "ok", "pass@1 0.22 -> 0.91 (+0.69) on 64 prompts (k=4: pass@4 0.41 -> 0.97, maj@4 0.25 -> 0.92)"),
    (K1, "ok", "pass@1 0.30 -> 0.50 (+0.20) on 64 prompts"),
    (eval_block(drop=["final"]), "failed",
     ("pass@1 0.22 -> 0.60 (+0.38) on 64 prompts (k=4: pass@4 0.41 -> 0.80, maj@4 0.25 -> 0.62); the second number "
      "is step 25's evaluation (there is no final one)")),
    (eval_block(drop=["final", "steps"]), "failed",
     "pass@1 0.22 on 64 prompts (k=4: pass@4 0.41, maj@4 0.25); before training only (no final evaluation)"),
    (eval_block(drop=["baseline"]), "ok",
     "pass@1 0.91 on 64 prompts (k=4: pass@4 0.97, maj@4 0.92); no baseline"),
    (eval_block(drop=["baseline", "final", "steps"]), "failed",
     "none ran (the run ended before its first evaluation)"),
    (eval_block(drop=["baseline", "final", "steps"]), "ok", "none ran (the baseline and final evaluations were off)"),
    (MALFORMED["pass@1 a string"], "ok",
     "? (run.json's eval block cannot be read: 'eval.final' has no number pass@1)"),
    (MALFORMED["a list"], "ok", "? (run.json's eval block cannot be read: 'eval' is a list, not an object)"),
], ids=["both", "k=1", "failed mid-run", "baseline only", "final only", "none ran, failed", "none ran, off",
        "malformed final", "malformed block"])
def test_the_closing_summary_has_a_held_out_line(tmp_path, block, status, line):
    run_dir = make_run(tmp_path / "run", block, status)
    _, lines = summary.run_summary(run_dir, json.loads((run_dir / "run.json").read_text()))
    assert dict(lines)["held-out"] == line
    labels = [label for label, _ in lines]
    assert labels.index("held-out") == labels.index("  accuracy") + 1   # right after the training rewards


def test_a_run_without_eval_has_no_held_out_line_and_the_printed_summary_shows_it(tmp_path):
    from rich.console import Console

    plain = make_run(tmp_path / "plain")
    assert "held-out" not in dict(summary.run_summary(plain, json.loads((plain / "run.json").read_text()))[1])
    run_dir = make_run(tmp_path / "run", EVAL)
    out = io.StringIO()
    summary.print_run_summary(run_dir, json.loads((run_dir / "run.json").read_text()),
                              console=Console(file=out, width=200))
    assert re.search(r"held-out\s+pass@1 0.22 -> 0.91 \(\+0.69\) on 64 prompts", out.getvalue())
    assert "pass@1 0.22 -> 0.91" in (run_dir / "train.log").read_text()


# --- python -m r1exp.runs --------------------------------------------------------------------------------------------

@pytest.fixture
def day(tmp_path):
    day = tmp_path / "outputs" / "runs" / "2026-11-25"
    make_run(day / "10-00-00_both", EVAL)
    make_run(day / "11-00-00_base", eval_block(drop=["final"]), "failed", lr=2e-3)
    make_run(day / "12-00-00_none")
    make_run(day / "13-00-00_bad", MALFORMED["pass@1 a string"])
    (day / "14-00-00_cut").mkdir()
    (day / "14-00-00_cut" / "run.json").write_text('{"status": "ok", "eval": {"fin')
    return day


def test_the_list_shows_the_held_out_column(day):
    result = runs_cli(str(day.parent.parent))
    assert result.code == 0 and "Traceback" not in result.output, result.output
    assert re.search(r"reward first -> last\s+\W\s+held-out", result.stdout)
    row = {name: next(line for line in result.stdout.splitlines() if name in line)
           for name in ("both", "base", "none", "bad", "cut")}
    assert "0.20 -> 1.20" in row["both"] and "pass@1 0.22 -> 0.91" in row["both"]
    assert "pass@1 0.22 (baseline)" in row["base"]
    assert re.search(r"1.20\s+\W\s+-\s+\W", row["none"])
    assert re.search(r"1.20\s+\W\s+\?\s+\W", row["bad"])
    assert "unreadable" in row["cut"]


def test_compare_puts_the_held_out_evaluations_side_by_side(day, tmp_path):
    png = tmp_path / "c.png"
    result = runs_cli("compare", str(day / "10-00-00_both"), str(day / "11-00-00_base"), str(day / "12-00-00_none"),
                      str(day / "13-00-00_bad"), "-o", str(png))
    assert result.code == 0 and "Traceback" not in result.output, result.output
    out = result.stdout
    assert "trainer.learning_rate" in out and "held-out evaluation" in out
    cells = {label: re.split(r"\s*│\s*", line.strip("│ ")) for line in out.splitlines()
             for label in ("pass@1 baseline", "pass@1 final", "pass@1 change", "maj@4 change")
             if line.startswith(f"│ {label}")}
    assert cells["pass@1 baseline"][1:] == ["0.22", "0.22", "-", "?"]
    assert cells["pass@1 final"][1:] == ["0.91", "-", "-", "?"]
    assert cells["pass@1 change"][1:] == ["+0.69", "-", "-", "?"]
    assert cells["maj@4 change"][1:] == ["+0.67", "-", "-", "?"]
    assert "data=arithmetic (held out: seed 1042), 64 prompts, k=4, temperature=0.0, max_tokens=24" in out
    assert "different held-out sets" not in out   # the same set on both sides
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_of_runs_without_eval_prints_no_held_out_section(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", lr=2e-3)
    result = runs_cli("compare", str(a), str(b), "-o", str(tmp_path / "c.png"))
    assert result.code == 0, result.output
    assert "held-out" not in result.stdout and "reward curves:" in result.stdout


def test_compare_warns_when_the_held_out_sets_differ(tmp_path):
    other = eval_block(set={**EVAL["set"], "prompts": 32})
    a, b = make_run(tmp_path / "a", EVAL), make_run(tmp_path / "b", other, lr=2e-3)
    result = runs_cli("compare", str(a), str(b), "-o", str(tmp_path / "c.png"))
    assert result.code == 0, result.output
    assert "evaluated on different held-out sets" in result.stdout.replace("\n", "")


@pytest.mark.parametrize("eval_rows", [True, False], ids=["from metrics.jsonl", "from run.json"])
def test_the_compare_plot_adds_a_held_out_panel(tmp_path, eval_rows, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    a = runs.load_run(make_run(tmp_path / "a", EVAL, eval_rows=eval_rows))
    b = runs.load_run(make_run(tmp_path / "b"))
    assert runs.plot_curves([a, b], ["a", "b"], tmp_path / "c.png")
    axes = drawn[0].axes
    assert [ax.get_title() for ax in axes][2].startswith("held-out pass@1")
    (line,) = axes[2].get_lines()
    assert list(line.get_xdata()) == [0, 25, 50] and list(line.get_ydata()) == [0.22, 0.6, 0.91]
    drawn.clear()
    assert runs.plot_curves([b, b], ["b", "b2"], tmp_path / "d.png")
    assert len(drawn[0].axes) == 2   # no held-out panel without an evaluation


# --- a sweep's summary ---------------------------------------------------------------------------------------------

def make_sweep(root: Path, jobs: list[tuple]) -> Path:
    """A sweep folder whose job n has (eval block or None, reward_last10, status)."""
    sweep_dir = root / "sweep"
    for n, (block, reward, status) in enumerate(jobs):
        make_run(sweep_dir / str(n), block, status, rewards=(0.1, reward), overrides=[f"trainer.learning_rate={n}e-3"])
    (sweep_dir / "multirun.yaml").write_text("{}\n")
    return sweep_dir


def table(sweep_dir: Path) -> list[dict]:
    """summary.md's table rows as {column: cell}, in the order written."""
    lines = [line for line in (sweep_dir / "summary.md").read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:]]


@pytest.mark.parametrize("jobs, ranked_by, order, best", [
    ([(final_at(0.5), 1.9, "ok"), (final_at(0.9), 1.0, "ok"), (final_at(0.7), 1.5, "ok")],
     "eval/pass@1", ["1", "2", "0"], "1"),                           # every job evaluated: pass@1, not the reward
    ([(None, 1.0, "ok"), (None, 1.9, "ok"), (None, 1.5, "ok")],
     "reward_last10", ["1", "2", "0"], "1"),                         # none: by the reward, as before
    ([(None, 1.9, "ok"), (final_at(0.4), 0.5, "ok"), (None, 1.2, "ok"), (final_at(0.8), 0.7, "ok")],
     "eval/pass@1", ["3", "1", "0", "2"], "3"),                      # mixed: those without follow, by reward
    ([(final_at(0.99), 1.9, "failed"), (eval_block(drop=["final"]), 1.8, "ok"), (final_at(0.3), 0.2, "ok")],
     "eval/pass@1", ["2", "1"], "2"),                                # no final: after; failed: no rank
    ([(eval_block(drop=["final"]), 1.0, "ok"), (eval_block(drop=["final"]), 1.5, "ok")],
     "reward_last10", ["1", "0"], "1"),                              # baseline only everywhere: the reward
    ([(MALFORMED["pass@1 a string"], 1.9, "ok"), (final_at(0.6), 1.0, "ok")],
     "eval/pass@1", ["1", "0"], "1"),                                # a damaged block counts as none
], ids=["all eval", "no eval", "mixed", "failed and no final", "baselines only", "malformed"])
def test_the_sweep_summary_ranks_by_held_out_pass1_when_there_is_one(tmp_path, jobs, ranked_by, order, best):
    sweep_dir = make_sweep(tmp_path, jobs)
    assert sweep.summarize(sweep_dir) == (0 if all(s == "ok" for *_, s in jobs) else 1)
    text = (sweep_dir / "summary.md").read_text()
    assert f"Ranked by `{ranked_by}`" in text and f"Best by {ranked_by} (highest): job {best} " in text
    rows = table(sweep_dir)
    assert [row["job"] for row in rows] == [str(n) for n in range(len(jobs))]   # rows stay in job order
    assert [row["job"] for row in sorted((r for r in rows if r["rank"] != "-"), key=lambda r: int(r["rank"]))] == order
    assert all(row["rank"] == "-" for row in rows if row["job"] not in order)
    assert ("for comparison" in text) == (ranked_by == "eval/pass@1")
    has_eval = any(block is not None for block, *_ in jobs)
    assert ("pass@1 final" in rows[0]) == has_eval and ("pass@1 baseline" in rows[0]) == has_eval
    if ranked_by == "eval/pass@1":
        assert rows[int(best)]["pass@1 final"] == f"{jobs[int(best)][0]['final']['pass@1']:.4g}"


def test_the_summary_names_the_rewards_best_job_when_it_is_another(tmp_path):
    sweep_dir = make_sweep(tmp_path, [(final_at(0.5), 1.9, "ok"), (final_at(0.9), 1.0, "ok")])
    sweep.summarize(sweep_dir)
    text = (sweep_dir / "summary.md").read_text()
    assert "Best by eval/pass@1 (highest): job 1 (trainer.learning_rate=1e-3), eval/pass@1 = 0.9." in text
    assert ("Best by reward_last10 (highest): job 0 (trainer.learning_rate=0e-3), reward_last10 = 1.9 (the training "
            "reward, for comparison: another job).") in text


def test_the_sweep_tables_cells_and_csv_columns(tmp_path):
    sweep_dir = make_sweep(tmp_path, [(EVAL, 1.0, "ok"), (None, 1.9, "ok"), (MALFORMED["a list"], 1.5, "ok"),
                                      (eval_block(drop=["final"]), 0.5, "failed")])
    sweep.summarize(sweep_dir)
    rows = {row["job"]: row for row in table(sweep_dir)}
    assert (rows["0"]["pass@1 baseline"], rows["0"]["pass@1 final"]) == ("0.22", "0.91")
    assert (rows["1"]["pass@1 baseline"], rows["1"]["pass@1 final"]) == ("-", "-")
    assert (rows["2"]["pass@1 baseline"], rows["2"]["pass@1 final"]) == ("?", "?")
    assert (rows["3"]["pass@1 baseline"], rows["3"]["pass@1 final"]) == ("0.22", "-")
    with (sweep_dir / "summary.csv").open() as f:
        csv_rows = {row["job"]: row for row in csv.DictReader(f)}
    assert csv_rows["0"]["eval.final.pass@1"] == "0.91" and csv_rows["0"]["eval.final.maj@4"] == "0.92"
    assert csv_rows["0"]["eval.baseline.step"] == "0" and csv_rows["3"]["eval.final.pass@1"] == ""
    assert csv_rows["1"]["eval.final.pass@1"] == "" and csv_rows["2"]["eval.final.pass@1"] == "?"
    assert "1 of 4 jobs ended ok with one" in (sweep_dir / "summary.md").read_text()
    assert "Reward curves and held-out pass@1: `summary.png`" in (sweep_dir / "summary.md").read_text()


def test_the_sweep_png_has_a_held_out_panel_only_with_an_evaluation(tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    with_eval = make_sweep(tmp_path / "a", [(EVAL, 1.0, "ok"), (None, 1.9, "ok")])
    sweep.write_summary(with_eval, sweep.collect_jobs(with_eval))
    assert [ax.get_title() for ax in drawn[0].axes][1].startswith("held-out pass@1")
    drawn.clear()
    without = make_sweep(tmp_path / "b", [(None, 1.0, "ok"), (None, 1.9, "ok")])
    sweep.write_summary(without, sweep.collect_jobs(without))
    assert len(drawn[0].axes) == 1


def test_an_objective_wins_over_the_held_out_ranking(tmp_path):
    sweep_dir = make_sweep(tmp_path, [(final_at(0.9), 1.0, "ok"), (final_at(0.5), 1.9, "ok")])
    sweep.summarize(sweep_dir, "reward_last10")
    text = (sweep_dir / "summary.md").read_text()
    assert "Ranked by the sweep's objective `reward_last10`" in text and "Best by reward_last10 (highest): job 1" in text
    assert [row["rank"] for row in table(sweep_dir)] == ["2", "1"] and "for comparison" not in text
    sweep.summarize(sweep_dir, "eval/maj@4", maximize=False)   # both 0.92: a tie goes to the better training reward
    assert "Best by eval/maj@4 (lowest): job 1" in (sweep_dir / "summary.md").read_text()


def test_the_runs_list_names_the_sweeps_best_job_by_held_out_pass1(tmp_path):
    make_sweep(tmp_path / "outputs", [(final_at(0.5), 1.9, "ok"), (final_at(0.9), 1.0, "ok")])
    result = runs_cli(str(tmp_path / "outputs"))
    assert result.code == 0, result.output
    assert re.search(r"sweep sweep: 2/2 jobs ok, best job 1 \(trainer.learning_rate=1e-3\) eval/pass@1 0.900",
                     result.stdout), result.stdout


@pytest.mark.parametrize("objective, block, code, value", [
    ("eval/pass@1", EVAL, 0, 0.91),
    ("eval/maj@4", EVAL, 0, 0.92),
    ("eval/pass@1", eval_block(drop=["final"]), 0, -math.inf),       # no final evaluation: the worst value
    ("eval/pass@1", None, 0, -math.inf),                             # evaluation off
    ("eval/pass@1", MALFORMED["a string"], 0, -math.inf),
    ("eval/pass@1", EVAL, 1, -math.inf),                             # the job failed
    ("reward_last10", EVAL, 0, 1.2),                                 # the existing names are unchanged
    (None, EVAL, 0, 0),                                              # no objective: the exit status
])
def test_an_optuna_objective_can_be_the_held_out_pass1(tmp_path, objective, block, code, value):
    from omegaconf import OmegaConf

    run_dir = make_run(tmp_path / "run", block)
    assert sweep.job_value(OmegaConf.create({"objective": objective}), code, run_dir) == value
