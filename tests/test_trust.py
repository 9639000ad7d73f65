"""A run folder is data, not code (r1exp.records.trust): reproducing, resuming or evaluating a folder someone else made
takes only its r1exp config, never its `hydra:` section, and imports no code it names that is not r1exp's own
unless the person running the command allows it. Each plant below would run a `hubconf.py` through torch.hub.load;
the test asserts its marker file never appears."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from r1exp.config.compose import compose
from r1exp.records import trust

ROOT = Path(__file__).resolve().parents[1]


def planted(tmp_path: Path, *, reward_target: bool, hydra_callback: bool, place: str = "reward") -> tuple[Path, Path]:
    """A run folder whose saved config would run a hubconf.py that writes a marker file."""
    marker = tmp_path / "RAN"
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef x(**_):\n    return None\n")
    config = OmegaConf.to_container(compose(["trainer.max_steps=1", "engine=hf", "eval=none", "logger=none"]))
    call = {"_target_": "torch.hub.load", "repo_or_dir": str(hub), "model": "x", "source": "local"}
    if reward_target and place == "reward":
        config["reward"]["evil"] = {**call, "weight": 1.0}
    elif reward_target and place == "tools":
        config["tools"] = {"evil": {**call, "time_limit_s": 2.0}}
    elif reward_target:
        config[place] = call
    if hydra_callback:
        config["hydra"] = {"callbacks": {"evil": call}}
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return run, marker


def command(*args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.mark.parametrize("module,place,key", [
    ("r1exp.reproduce", "reward", "reward.evil"), ("r1exp.eval", "reward", "reward.evil"),
    ("r1exp.reproduce", "tools", "tools.evil"), ("r1exp.reproduce", "environment", "environment"),
])
def test_code_a_folder_names_is_refused_before_anything_is_imported(tmp_path, module, place, key):
    run, marker = planted(tmp_path, reward_target=True, hydra_callback=False, place=place)
    new = tmp_path / "new"
    done = command("-m", module, str(run), f"hydra.run.dir={new}" if module == "r1exp.reproduce" else "eval.k=1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{key}: torch.hub.load" in done.stderr and "--allow=torch.hub.load" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists() and not new.exists()


def test_a_folders_hydra_section_is_not_taken(tmp_path):
    """A saved `hydra.callbacks` would run at the start of the reproduced run: it is left out, the run goes on."""
    run, marker = planted(tmp_path, reward_target=False, hydra_callback=True)
    done = command("-m", "r1exp.reproduce", str(run), f"hydra.run.dir={tmp_path / 'new'}", timeout=600)
    assert (tmp_path / "new" / "run.json").exists(), done.stdout[-2000:] + done.stderr[-2000:]
    assert not marker.exists()


@pytest.mark.parametrize("config, allowed, trust_all, expected", [
    ({"reward": {"a": {"_target_": "r1exp.rewards.correctness.accuracy"}}}, (), False, []),
    ({"reward": {"a": {"_target_": "mypkg.judge"}}}, (), False, [("reward.a", "mypkg.judge")]),
    ({"reward": {"a": {"_target_": "mypkg.judge"}}}, ("mypkg.judge",), False, []),
    ({"reward": {"a": {"_target_": "mypkg.judge"}}}, (), True, []),
    ({"engine": {"_target_": "evil.Engine"}, "x": [{"_target_": "os.system"}]}, (), False,
     [("engine", "evil.Engine"), ("x[0]", "os.system")]),
    ({"model": {"warmup": {"tools": {"functions": ["r1exp.tools.calculator.calculator", "evil.fn"]}}}}, (), False,
     [("model.warmup.tools.functions[1]", "evil.fn")]),   # import paths outside `_target_`
])
def test_what_is_trusted(config, allowed, trust_all, expected):
    assert trust.untrusted_targets(config, allowed, trust_all) == expected


def test_hydras_settings_are_never_taken_from_a_folder():
    assert trust.config_of_folder({"hydra": {"callbacks": {}}, "defaults": [], "seed": 1}) == {"seed": 1}


def finished_run(tmp_path: Path) -> Path:
    """A run folder as a finished run leaves it (no checkpoint), from the real CLI."""
    from conftest import run_cli

    result = run_cli(["trainer.max_steps=1", "engine=hf", "eval=none", "logger=none"], tmp_path / "run", timeout=600)
    assert result.code == 0, result.output[-2000:]
    return result.run_dir


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args", [["resume=true"], ["hydra.run.dir={run}"]])
def test_a_refused_command_writes_nothing_into_the_run(tmp_path, args):
    """Resuming a run with no checkpoint, or reproducing a run into its own folder, is refused (exit 2) and leaves
    every file of the run as it was: status, .hydra/, train.log, no claim file."""
    run = finished_run(tmp_path)
    before = snapshot(run)
    done = command("-m", "r1exp.reproduce", str(run), *[a.format(run=run) for a in args])
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert snapshot(run) == before
