"""loader.trl_trainers: what Unsloth generates of TRL's trainers as it is imported (r1exp/patches/unsloth_imports.py).

Unsloth cannot be imported without a GPU, so this builds a package laid out as Unsloth 2026.10 is where it matters:
`unsloth.models.rl` defines the walk over TRL's trainers (`patch_trl_rl_trainers`) and the call for one trainer
(`_patch_trl_rl_trainers`); `unsloth.models.llama`, imported by `unsloth`, runs `PatchFastRL`, which calls the walk
by its module-level name. The real import on the H200 is in bench/results/gpu/startup."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from r1exp.patches import unsloth_imports

RL = '''
GENERATED = []
TRAINERS = ["dpo_trainer", "grpo_trainer", "sft_trainer"]

def _patch_trl_rl_trainers(trainer_file="grpo_trainer"):
    GENERATED.append(trainer_file)

def patch_trl_rl_trainers():
    for trainer in TRAINERS:
        _patch_trl_rl_trainers(trainer)

def PatchFastRL():
    patch_trl_rl_trainers()
'''


@pytest.fixture
def fake_unsloth(tmp_path, monkeypatch):
    models = tmp_path / "unsloth" / "models"
    models.mkdir(parents=True)
    (tmp_path / "unsloth" / "__init__.py").write_text("from .models import llama\n")
    (models / "__init__.py").write_text("")
    (models / "rl.py").write_text(RL)
    (models / "llama.py").write_text("from .rl import PatchFastRL\nPatchFastRL()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = {m: sys.modules.pop(m) for m in list(sys.modules) if m == "unsloth" or m.startswith("unsloth.")}
    yield
    for name in [m for m in sys.modules if m == "unsloth" or m.startswith("unsloth.")]:
        del sys.modules[name]
    sys.modules.update(real)   # a GPU session's real Unsloth, if one was imported


@pytest.mark.parametrize("trl_trainers, generated", [
    ("grpo", ["grpo_trainer"]),                                   # r1exp's default: the trainer it builds
    ("all", ["dpo_trainer", "grpo_trainer", "sft_trainer"]),      # Unsloth's own import
])
def test_unsloth_generates_the_trainers_the_setting_names(fake_unsloth, trl_trainers, generated):
    before = list(sys.meta_path)
    unsloth_imports.import_unsloth(trl_trainers)
    assert sys.modules["unsloth.models.rl"].GENERATED == generated
    assert sys.meta_path == before          # the hook is gone once unsloth is imported


def test_an_unsloth_without_the_single_trainer_call_keeps_its_own_walk(fake_unsloth, tmp_path):
    rl = tmp_path / "unsloth" / "models" / "rl.py"
    rl.write_text(RL.replace("_patch_trl_rl_trainers(", "_generate_one("))   # another version's name for it
    unsloth_imports.import_unsloth("grpo")
    assert sys.modules["unsloth.models.rl"].GENERATED == ["dpo_trainer", "grpo_trainer", "sft_trainer"]


def test_the_loader_field_accepts_only_the_two_settings():
    from pydantic import ValidationError

    from r1exp.loaders.unsloth_loader import UnslothLoader

    assert UnslothLoader(name="unsloth").trl_trainers == "grpo"
    with pytest.raises(ValidationError):
        UnslothLoader(name="unsloth", trl_trainers="sft")


H200 = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu" / "startup"


@pytest.mark.parametrize("call, grpo, every", [("same_machine_later", "q05_unsloth_grpo", "q05_unsloth_all"),
                                               ("fresh_machine_carried_cache", "q05_unsloth_2", "q05_unsloth_all")])
def test_on_the_h200_generating_the_grpo_trainer_alone_halves_unsloths_import(call, grpo, every):
    """0.5B Unsloth, back to back on one machine: Unsloth's own share of the imports (run.json
    startup.imports_by_package_s) with trl_trainers=grpo and =all, and both trained with Unsloth's GRPO trainer
    (its config's DAPO notes in the log; pi_old from the training forward, r1exp/patches/unsloth_on_policy.py)."""
    runs = json.loads((H200 / call / "variants.json").read_text())["runs"]
    share = {label: runs[label]["startup"]["imports_by_package_s"]["unsloth"] for label in (grpo, every)}
    assert share[grpo] < 0.6 * share[every], share
    for label, setting in ((grpo, "grpo"), (every, "all")):
        run = json.loads((H200 / call / "runs" / label / "run.json").read_text())
        assert run["config"]["loader"]["trl_trainers"] == setting
        assert run["status"] == "ok" and runs[label]["steps"] == run["config"]["trainer"]["max_steps"]
        assert run["old_logprobs"]["source"] == "training forward"
        assert "The DAPO paper recommends" in (H200 / call / "runs" / label / "log_tail.txt").read_text()
