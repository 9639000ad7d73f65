"""The live view: what it shows per step, when it warns, and the two output modes (rich on a terminal, plain lines
elsewhere). Driven through transformers' real TrainerCallback events with TrainerState objects; the view of a real
default run is checked in test_end_to_end.py."""

from __future__ import annotations

import io
import json

import pytest

from r1exp.observe import live

REWARDS = {"rewards/accuracy/mean": 0.25, "rewards/accuracy/std": 0.4, "rewards/format/mean": 0.5}


def log(reward=0.75, zero_std=0.1, clipped=0.0, **extra) -> dict:
    return {"loss": 0.1, "reward": reward, **REWARDS, "frac_reward_zero_std": zero_std,
            "completions/clipped_ratio": clipped, "completions/mean_length": 17.5, "step_time": 0.3, **extra}


def kinds(logs: list[dict]) -> set:
    signals = live.Signals(max_completion_length=24)
    for row in logs:
        signals.update(row)
    return set(signals.current())


@pytest.mark.parametrize("logs, expected", [
    ([log(reward=0.1 * i) for i in range(12)], set()),                                   # learning: no warning
    ([log(zero_std=0.9)] * 3, {"zero_std"}),                                            # most groups without signal
    ([log(zero_std=0.9)] * 2 + [log(zero_std=0.1)] * 3, set()),                         # ... and it passed
    ([log(zero_std=0.5)] * 3, set()),                                                   # half the groups still learn
    ([log(reward=0.1 * i) for i in range(4)] + [log(clipped=1.0)], {"clipped"}),       # every completion clipped
    ([log(clipped=0.6)], set()),                                                        # some clipped: fine
    ([log(reward=0.5)] * live.FLAT_STEPS, {"flat"}),                                    # reward flat for N steps
    ([log(reward=0.5)] * (live.FLAT_STEPS - 1), set()),                                 # ... not yet N
    ([log(reward=0.5, zero_std=1.0, clipped=1.0)] * live.FLAT_STEPS, {"zero_std", "clipped", "flat"}),
])
def test_warnings_when_training_has_no_signal(logs, expected):
    assert kinds(logs) == expected


def test_a_warning_is_reported_when_it_starts_not_at_every_step():
    signals = live.Signals()
    reported = [signals.update(log(clipped=c)) for c in (0.0, 1.0, 1.0, 0.0, 1.0)]
    assert [len(r) for r in reported] == [0, 1, 0, 0, 1]
    assert "max_completion_length" in reported[1][0] and "raise trainer.max_completion_length" in reported[1][0]


def test_plain_line_has_step_eta_rewards_length_and_step_time():
    step = live.Step(step=10, total=50, elapsed_s=4.2, eta_s=16.0, reward=0.75,
                     rewards={"accuracy": 0.25, "format": 0.5}, length=17.5, step_time_s=0.31)
    assert live.plain_line(step) == ("step 10/50 (20%) 0:00:04 eta 0:00:16 | reward 0.75 (accuracy 0.25, "
                                     "format 0.50) | length 17.5 | 0.31 s/step")


@pytest.mark.parametrize("multirun, tty, forced, mode", [
    (False, True, "", "rich"),
    (False, False, "", "plain"),     # CI, a pipe, a SLURM log
    (True, True, "", "plain"),       # a job of a multirun
    (False, False, "rich", "rich"),  # R1EXP_LIVE forces a mode
    (False, True, "plain", "plain"),
])
def test_mode(multirun, tty, forced, mode, monkeypatch):
    monkeypatch.setenv("R1EXP_LIVE", forced)
    stream = io.StringIO()
    stream.isatty = lambda: tty
    assert live.choose_mode(multirun, stream) == mode


def drive(view, steps: int, logs=log):
    """Feed the view the events of a training of `steps` steps, as transformers' Trainer does."""
    from transformers import TrainerControl, TrainerState

    state, control = TrainerState(max_steps=steps), TrainerControl()
    view.on_train_begin(None, state, control)
    for i in range(1, steps + 1):
        state.global_step = i
        view.on_step_end(None, state, control)
        view.on_log(None, state, control, logs=logs(i))
    view.on_log(None, state, control, logs={"train_runtime": 3.0, "train_loss": 0.1})
    view.on_train_end(None, state, control)


def test_plain_mode_prints_a_line_every_n_steps_and_the_full_logs_go_to_train_log(tmp_path):
    from rich.console import Console

    out = io.StringIO()
    view = live.live_view(tmp_path, "plain", 24, console=Console(file=out, width=200))
    drive(view, 20, lambda i: log(reward=0.05 * i))
    lines = out.getvalue().splitlines()
    steps = [line.split()[1] for line in lines if line.startswith("step ")]
    assert steps == ["1/20", "2/20", "4/20", "6/20", "8/20", "10/20", "12/20", "14/20", "16/20", "18/20", "20/20"]
    assert "'loss'" not in out.getvalue() and "train_runtime" not in out.getvalue()
    logged = (tmp_path / live.LOG_FILE).read_text().splitlines()
    full = [json.loads(line.split(" ", 2)[2]) for line in logged if line.startswith("step ")]
    assert len(full) == 21 and full[0]["loss"] == 0.1 and "train_runtime" in full[-1]


def test_rich_mode_shows_a_progress_bar_and_the_rewards_and_prints_warnings_above_it(tmp_path):
    from rich.console import Console

    out = io.StringIO()
    view = live.live_view(tmp_path, "rich", 24, console=Console(file=out, force_terminal=True, width=160))
    drive(view, 12, lambda i: log(reward=0.5, clipped=1.0))
    text = out.getvalue()
    assert "12/12" in text and "reward 0.50 (accuracy 0.25, format 0.50)" in text and "s/step" in text
    assert "every completion was cut at max_completion_length=24" in text
    assert "reward flat at 0.500" in text
    assert "'loss'" not in text
    assert "warning: step 1: every completion was cut" in (tmp_path / live.LOG_FILE).read_text()


def test_the_eta_and_the_step_time_leave_out_the_first_step(tmp_path, monkeypatch):
    """The first step pays for warm-up (60 s here, 1 s each after it): at step 1 there is no ETA and the line says
    the first step's time is warm-up; from step 2 the ETA and s/step come from the later steps only. Before, step 1
    gave an ETA of 60 s x 9 steps and step 2 a step time of 30.5 s."""
    from rich.console import Console

    clock = {"now": 1000.0}
    monkeypatch.setattr(live.time, "monotonic", lambda: clock["now"])
    out = io.StringIO()
    view = live.live_view(tmp_path, "plain", 24, console=Console(file=out, width=200))
    from transformers import TrainerControl, TrainerState

    state, control = TrainerState(max_steps=10), TrainerControl()
    view.on_train_begin(None, state, control)
    for i in range(1, 4):
        clock["now"] += 60.0 if i == 1 else 1.0
        state.global_step = i
        view.on_step_end(None, state, control)
        view.on_log(None, state, control, logs=log(step_time=60.0 if i == 1 else 1.0))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 1/10 (10%) 0:01:00 | ") and "eta" not in lines[0]
    assert lines[0].endswith("first step 60.00 s (warm-up)")
    assert lines[1].startswith("step 2/10 (20%) 0:01:01 eta 0:00:08 | ") and lines[1].endswith("| 1.00 s/step")
    assert lines[2].startswith("step 3/10 (30%) 0:01:02 eta 0:00:07 | ") and lines[2].endswith("| 1.00 s/step")


def test_rich_mode_shows_no_eta_until_a_step_after_the_first(tmp_path, monkeypatch):
    from rich.console import Console

    clock = {"now": 0.0}
    monkeypatch.setattr(live.time, "monotonic", lambda: clock["now"])
    view = live.live_view(tmp_path, "rich", 24, console=Console(file=io.StringIO(), force_terminal=True, width=160))
    from transformers import TrainerControl, TrainerState

    state, control = TrainerState(max_steps=300), TrainerControl()
    view.on_train_begin(None, state, control)
    etas = []
    for i in (1, 2):
        clock["now"] += 900.0 if i == 1 else 2.0   # a 15-minute first step (compiling), then 2 s a step
        state.global_step = i
        view.on_step_end(None, state, control)
        view.on_log(None, state, control, logs=log())
        etas.append(view.progress.tasks[0].fields["eta"])
    view.on_train_end(None, state, control)
    assert etas == ["eta -:--:--", f"eta {live.clock(2.0 * 298)}"]


@pytest.mark.parametrize("setting, mode", [("plain,verbose", "plain"), ("verbose", "rich"), ("Rich, Verbose", "rich")])
def test_the_mode_words_combine_with_verbose(setting, mode, monkeypatch):
    monkeypatch.setenv("R1EXP_LIVE", setting)
    stream = io.StringIO()
    stream.isatty = lambda: True
    assert live.choose_mode(False, stream) == mode
