"""Where the time goes (r1exp.observe.timing), as a specification.

Fast: the phase clock's accounting (nested phases count their own time only, so phases never add up to more than
the step), the method wrapping (what is missing is skipped; log-probs inside the loss belong to the loss), the
start-up watch (heavy imports and the timed build functions, undone afterwards), vLLM's start-up figures read from
its log lines, the per-run summary and the sweep's table.

Real runs (`check_run`; the default suite checks the default engine=vllm run of tests/test_end_to_end.py with it,
and short engine=hf and engine=vllm runs here are slow): every step's log line in metrics.jsonl and W&B has the
time/* keys, non-negative, adding up to the step; generation is positive; weight sync is positive with vLLM and zero
without it; run.json has the start-up split.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from r1exp.observe import timing
from r1exp.patches import timing_hooks
from r1exp.machine import bytecode
from r1exp.scale.sweep import Job, write_summary


class FakeClock:
    """A clock that moves only when told: phases get exact, known durations."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def play(script):
    """Run a script of ("enter", phase) / ("exit",) / ("wait", seconds) on a PhaseClock; its totals."""
    fake = FakeClock()
    clock = timing.PhaseClock(clock=fake)
    for op, *arg in script:
        if op == "enter":
            clock.enter(arg[0])
        elif op == "exit":
            clock.exit()
        else:
            fake.now += arg[0]
    return clock.take()


@pytest.mark.parametrize("script, expected", [
    ([("enter", "generation"), ("wait", 2.0), ("exit",)], {"generation": 2.0}),
    # weight sync inside generation: counted once, as weight sync
    ([("enter", "generation"), ("wait", 1.0), ("enter", "weight_sync"), ("wait", 3.0), ("exit",), ("wait", 0.5),
      ("exit",)], {"generation": 1.5, "weight_sync": 3.0}),
    # the same phase nested in itself (TRL's _generate around vllm_generation.generate) adds up to the outer span
    ([("enter", "generation"), ("wait", 1.0), ("enter", "generation"), ("wait", 2.0), ("exit",), ("exit",)],
     {"generation": 3.0}),
    # a "rest" span (TRL's _prepare_inputs) keeps only what its nested phases did not take
    ([("enter", "backward_optimizer"), ("enter", "rest"), ("enter", "generation"), ("wait", 4.0), ("exit",),
      ("enter", "rewards"), ("wait", 0.25), ("exit",), ("wait", 0.5), ("exit",), ("wait", 1.0), ("exit",)],
     {"backward_optimizer": 1.0, "rest": 0.5, "generation": 4.0, "rewards": 0.25}),
])
def test_each_phase_counts_only_its_own_time(script, expected):
    assert play(script) == pytest.approx(expected)


def test_take_starts_again_from_zero_and_sync_is_called_at_every_boundary():
    calls = []
    fake = FakeClock()
    clock = timing.PhaseClock(sync=lambda: calls.append(fake.now), clock=fake)
    with clock.phase("rewards"):
        fake.now += 1.0
    assert clock.take() == {"rewards": 1.0} and clock.take() == {}
    assert calls == [0.0, 1.0]


class FakeAllocator:
    """torch's peak-allocation counter: `allocate` / `free` move it, a read returns the peak and starts a new
    interval at what is held now (take_allocated_peak's contract)."""

    def __init__(self):
        self.held = self.peak = 0

    def allocate(self, n):
        self.held += n
        self.peak = max(self.peak, self.held)

    def free(self, n):
        self.held -= n

    def __call__(self):
        peak, self.peak = self.peak, self.held
        return peak


def test_each_phase_gets_the_memory_peak_of_its_own_intervals_and_the_rest_is_other():
    memory = FakeAllocator()
    clock = timing.PhaseClock(memory=memory)
    memory.allocate(10)                        # before the step: weights (a new interval starts at the first phase)
    clock.boundary()
    clock.take_peaks()
    with clock.phase("generation"):
        memory.allocate(30)                    # KV cache in use
        memory.free(30)
    memory.allocate(5)                         # advantages, outside every phase
    memory.free(5)
    with clock.phase("rest"):                  # TRL's _prepare_inputs around the phases: counts as other
        memory.allocate(8)
        memory.free(8)
    with clock.phase("backward_optimizer"):
        memory.allocate(50)
        with clock.phase("logprobs"):          # nested: its own interval, not the loss's
            memory.allocate(100)
            memory.free(100)
        memory.free(50)
    clock.boundary()
    assert clock.take_peaks() == {"generation": 40, "other": 18, "backward_optimizer": 60, "logprobs": 160}
    assert clock.take_peaks() == {}


class Trainer:
    """Stands in for the parts of a GRPOTrainer the wrapper looks at (methods by name)."""

    def __init__(self, fake: FakeClock):
        self.fake = fake

    def _generate(self, prompts):
        return ["out"] * len(prompts)

    def _get_per_token_logps_and_entropies(self):
        self.fake.now += 1.0
        return "logps"

    def training_step(self):
        self.fake.now += 2.0
        return self._get_per_token_logps_and_entropies()   # inside the loss: the loss's forward


def test_methods_are_wrapped_by_name_and_missing_ones_are_skipped():
    fake = FakeClock()
    clock = timing.PhaseClock(clock=fake)
    t = Trainer(fake)
    assert timing_hooks.wrap_method(t, "_generate", "generation", clock)
    assert not timing_hooks.wrap_method(t, "_move_model_to_vllm", "weight_sync", clock)   # not in this "TRL"
    assert not timing_hooks.wrap_method(t, "_generate", "generation", clock)              # not wrapped twice
    assert t._generate([1, 2]) == ["out", "out"] and t._generate.__name__ == "_generate"
    assert "_generate" in vars(t) and not hasattr(Trainer._generate, "_r1exp_phase")  # the class is untouched


def test_logprobs_inside_the_loss_belong_to_the_loss():
    fake = FakeClock()
    clock = timing.PhaseClock(clock=fake)
    t = Trainer(fake)
    timing_hooks.wrap_method(t, "training_step", "backward_optimizer", clock)
    timing_hooks.wrap_method(t, "_get_per_token_logps_and_entropies", "logprobs", clock, skip_inside="backward_optimizer")
    t._get_per_token_logps_and_entropies()     # before the loss (old/reference log-probs)
    t.training_step()
    assert clock.take() == pytest.approx({"logprobs": 1.0, "backward_optimizer": 3.0})


def test_summary_of_steps_leaves_out_the_first_step():
    rows = [{"reward": 0.1, "time/step": 10.0, "time/generation": 8.0},
            {"reward": 0.2, "time/step": 2.0, "time/generation": 1.0, "time/other": 1.0},
            {"reward": 0.3, "time/step": 4.0, "time/generation": 3.0, "time/other": 1.0}]
    out = timing.summarize_steps(rows)
    assert out["time_mean/step"] == 3.0 and out["time_mean/generation"] == 2.0 and out["time_first/step"] == 10.0
    assert out["time_mean/weight_sync"] == 0.0
    assert timing.summarize_steps([{"reward": 1.0}]) == {}


# --- start-up --------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_heavy(tmp_path, monkeypatch):
    """A package `heavypkg` that takes 0.2 s to import, a model whose from_pretrained (a classmethod) takes 0.3 s,
    and an engine whose __init__ takes 0.1 s plus a worker method of 0.15 s in a module imported by the engine
    with importlib (as vLLM imports its workers)."""
    pkg = tmp_path / "heavypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import time\ntime.sleep(0.2)\n")
    (pkg / "models.py").write_text(textwrap.dedent("""
        import importlib, time
        class Model:
            @classmethod
            def from_pretrained(cls, path):
                time.sleep(0.3)
                return cls()
        class Engine:
            def __init__(self):
                time.sleep(0.1)
                worker = importlib.import_module("heavypkg.worker").Worker()
                worker.load_model()
    """))
    (pkg / "worker.py").write_text("import time\nclass Worker:\n    def load_model(self):\n        time.sleep(0.15)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bytecode, "HEAVY_PACKAGES", bytecode.HEAVY_PACKAGES | {"heavypkg"})
    monkeypatch.setattr(timing, "STARTUP_TARGETS", (
        ("heavypkg.models", "Model.from_pretrained", "model_load"),
        ("heavypkg.models", "Engine.__init__", "engine_start"),
        ("heavypkg.worker", "Worker.load_model", "engine_weights_load"),
        ("heavypkg.models", "Engine.no_such_method", "graph_capture"),   # another version's name: left out
    ))
    monkeypatch.setattr(timing.Startup, "current", None)
    yield
    for name in ("heavypkg", "heavypkg.models", "heavypkg.worker"):
        sys.modules.pop(name, None)


def test_startup_splits_the_build_into_imports_model_load_and_engine_parts(fake_heavy):
    import builtins

    seen = []
    startup = timing.Startup(on_change=seen.append)
    before_import, before_path = builtins.__import__, list(sys.meta_path)
    with startup.build():
        from heavypkg.models import Engine, Model   # noqa: I001 - imported inside the watched build

        Model.from_pretrained("x")
        Engine()
    p = startup.parts
    assert p["imports_s"] >= 0.2 and p["model_load_s"] >= 0.3 and p["engine_start_s"] >= 0.1
    assert p["engine_weights_load_s"] >= 0.15 and p["graph_capture_s"] == 0
    # each part counts its own time: the worker's 0.15 s is not in engine_start as well
    assert p["model_load_s"] < 0.3 + 0.1 and p["engine_start_s"] < 0.1 + 0.1
    assert p["before_run_s"] >= 0 and p["checks_s"] >= 0 and p["build_other_s"] >= 0
    assert seen and seen[-1] == p                                              # run.json gets every change
    # everything is undone: the import machinery and the classes are as before
    assert builtins.__import__ is before_import and sys.meta_path == before_path
    from heavypkg.worker import Worker

    for method in (Model.from_pretrained, Engine.__init__, Worker.load_model):
        assert not hasattr(method, "_r1exp_phase"), method


def test_imports_are_split_by_package_each_counting_its_own_share(tmp_path, monkeypatch):
    bodies = {"outerpkg": "import time\nimport innerpkg\ntime.sleep(0.2)\n", "innerpkg": "import time\ntime.sleep(0.3)\n"}
    for name, body in bodies.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bytecode, "HEAVY_PACKAGES", bytecode.HEAVY_PACKAGES | set(bodies))
    monkeypatch.setattr(timing.Startup, "current", None)
    startup = timing.Startup()
    try:
        with startup.build():
            import outerpkg  # noqa: F401 - imported inside the watched build
    finally:
        for name in bodies:
            sys.modules.pop(name, None)
    shares = startup.parts["imports_by_package_s"]
    assert list(shares)[:2] == ["innerpkg", "outerpkg"]                     # largest first
    assert 0.3 <= shares["innerpkg"] < 0.4 and 0.2 <= shares["outerpkg"] < 0.3   # the outer one without the inner
    assert abs(sum(shares.values()) - startup.parts["imports_s"]) < 0.05     # together: the imports part


def test_a_later_run_in_the_same_process_has_no_before_run_part(monkeypatch):
    monkeypatch.setattr(timing.Startup, "current", None)
    assert "before_run_s" in timing.Startup().parts
    assert "before_run_s" not in timing.Startup().parts   # a multirun's second job: the process is not its own


# --- sweep summary ------------------------------------------------------------------------------------------------

def test_sweep_summary_has_the_phase_columns(tmp_path):
    metrics = {"steps_logged": 3, "time_mean/step": 2.0, "time_mean/generation": 1.25, "time_mean/weight_sync": 0.25,
               "time_mean/logprobs": 0.1, "time_mean/backward_optimizer": 0.3, "time_mean/rewards": 0.01,
               "time_mean/other": 0.09, "time_first/step": 9.5}
    jobs = [Job(0, tmp_path / "0", ["engine=vllm"], "ok", 0, metrics),
            Job(1, tmp_path / "1", ["engine=hf"], "failed", 1, {}, "boom")]
    for job in jobs:
        job.folder.mkdir()
    md = write_summary(tmp_path, jobs)["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| job |"))
    assert header.split(" | ")[3:-1] == ["rank", "steps_logged", "s/step", "gen", "sync", "logp", "train", "reward",
                                          "other"]
    assert "| 0 | vllm | ok | - | 3 | 2 | 1.25 | 0.25 | 0.1 | 0.3 | 0.01 | 0.09 | `0` |" in md   # no reward: no rank
    assert "| 1 | hf | failed | - |  |  |  |  |  |  |  |  | `1` |" in md   # no timing: empty cells
    assert "`gen` generation" in md
    csv_header = (tmp_path / "summary.csv").read_text().splitlines()[0]
    assert "time_mean/generation" in csv_header and "time_first/step" in csv_header


# --- real runs ---------------------------------------------------------------------------------------------------

TOLERANCE_S = 0.005


def check_run(run_dir: Path, engine: str, steps: int) -> None:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step_rows = [r for r in rows if "reward" in r]
    assert len(step_rows) == steps
    for r in step_rows:
        phases = {k: r[k] for k in timing.KEYS}
        assert all(v >= 0 for v in phases.values()), r
        named = sum(phases[f"time/{p}"] for p in timing.PHASES)
        assert named + phases["time/other"] <= phases["time/step"] + TOLERANCE_S, r
        assert phases["time/generation"] > 0 and phases["time/backward_optimizer"] > 0, r
        assert phases["time/rewards"] > 0 and phases["time/logprobs"] >= 0, r
        if engine == "hf":
            assert phases["time/weight_sync"] == 0, r
        # the collector's pauses: inside the step, not a phase of it; full collections counted
        assert 0 <= r["time/gc"] <= phases["time/step"] and r["gc/full_collections"] >= 0, r
    if engine == "vllm":   # TRL pushes the weights before every generation after the first step
        assert all(r["time/weight_sync"] > 0 for r in step_rows[1:]), step_rows
    # the steps add up to the training's wall time (TRL's train_runtime also covers set-up and the last log)
    runtime = next(r["train_runtime"] for r in rows if "train_runtime" in r)
    assert sum(r["time/step"] for r in step_rows) <= runtime
    manifest = json.loads((run_dir / "run.json").read_text())
    startup = manifest["startup"]
    for key in ("before_run_s", "checks_s", "imports_s", "model_load_s", "build_other_s", "train_setup_s",
                "first_step_s", "first_generation_s", "run_to_first_step_s", "process_to_first_step_s"):
        assert startup[key] >= 0, (key, startup)
    assert startup["imports_s"] > 0 and startup["model_load_s"] > 0
    parts = sum(startup.get(f"{p}_s", 0.0) for p in timing.STARTUP_PARTS)   # before_run: first run of a process only
    assert abs(parts - startup["process_to_first_step_s"]) < 0.01 * len(timing.STARTUP_PARTS), startup
    shares = startup["imports_by_package_s"]
    assert shares and abs(sum(shares.values()) - startup["imports_s"]) < 0.1 + 0.01 * len(shares), startup
    assert "_generate" in startup["timed"] and "training_step" in startup["timed"]
    if engine == "vllm":
        assert all(startup[k] > 0 for k in ("engine_start_s", "engine_weights_load_s", "engine_profile_s"))
        assert "vllm_generation.sync_weights" in startup["timed"]
    assert manifest["metrics"]["time_mean/step"] > 0 and manifest["metrics"]["time_mean/gc"] >= 0
    from r1exp.records.wandb_offline import read_offline_run

    history = [h for h in read_offline_run(run_dir)["history"] if "train/time/step" in h]
    assert len(history) == steps and all("train/time/weight_sync" in h for h in history)


ARGS = ["trainer.max_steps=3", "trainer.per_device_train_batch_size=8", "trainer.num_generations=4",
        "checks.reward_sanity=false", "logger.mode=offline"]


@pytest.mark.slow
def test_engine_hf_steps_are_split_into_phases(tmp_path):
    result = run_cli([*ARGS, "engine=hf"], tmp_path / "run", timeout=600)
    assert result.code == 0, result.output[-4000:]
    check_run(result.run_dir, "hf", 3)


@pytest.mark.slow
def test_engine_vllm_steps_are_split_into_phases(tmp_path):
    result = run_cli([*ARGS, "engine=vllm"], tmp_path / "run", timeout=900)
    assert result.code == 0, result.output[-4000:]
    check_run(result.run_dir, "vllm", 3)
