"""The tiny model's shipped build (r1exp/models/shipped): a cold cache copies it instead of warming a model up;
only exactly its recipe gets it; it is the recipe's build, nothing else (rebuilt and compared: slow); a build says
what it is doing, phase by phase; the warm-up's shared-prefix loss is the whole model's loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from r1exp.config.compose import compose
from r1exp.models import tiny

SMALL = ["model.warmup.steps=8", "model.warmup.sloppy_steps=4"]   # a real build of a few seconds


@pytest.fixture(scope="module")
def demo():
    return compose([])


def no_build(*args):
    raise AssertionError("built, where the shipped build should have been copied")


@pytest.mark.parametrize("overrides", [[], ["experiment=tool_use"]], ids=["demo", "tool_use"])
def test_the_demo_recipe_ships_and_is_small(overrides):
    demo = compose(overrides)
    folder = tiny.shipped_folder(demo.model, demo.data)
    assert folder is not None, (f"no shipped build {tiny.folder_name(demo.model, demo.data)} for the demo's recipe: "
                                "python -m r1exp.models.tiny --write-shipped")
    sizes = {f.name: f.stat().st_size for f in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", tiny.DONE} <= set(sizes)
    assert sum(sizes.values()) < 3e6, sizes
    assert json.loads((folder / tiny.DONE).read_text())["recipe"] == tiny.build_spec(demo.model, demo.data)
    for other in tiny.SHIPPED.iterdir():   # none left behind by an earlier way of building
        assert json.loads((other / tiny.DONE).read_text())["recipe"]["v"] == tiny.BUILD_VERSION, other


def test_a_cold_cache_gets_the_shipped_build_without_building(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("R1EXP_CACHE", str(tmp_path))
    monkeypatch.setattr(tiny, "_build_into", no_build)
    lines = []
    folder = tiny.ensure_local_model(demo.model, demo.data, log=lines.append)
    assert folder == tmp_path / "models" / tiny.folder_name(demo.model, demo.data)
    assert list(folder.parent.iterdir()) == [folder]   # no temporary folder left
    assert tiny.differences(folder, tiny.shipped_folder(demo.model, demo.data)) == []
    assert len(lines) == 1 and "ships with r1exp" in lines[0], lines
    assert tiny.ensure_local_model(demo.model, demo.data, log=lines.append) == folder and len(lines) == 1  # cached


@pytest.mark.parametrize("overrides", [["seed=1"], ["data.num_samples=100"], ["trainer.max_steps=5"],
                                       ["model.lora.r=8"]])
def test_what_the_warm_up_does_not_read_keeps_the_shipped_build(overrides):
    cfg = compose(overrides)
    assert tiny.shipped_folder(cfg.model, cfg.data) is not None


@pytest.mark.parametrize("overrides", [["model.warmup.steps=299"], ["model.arch.hidden=64"], ["data=countdown"],
                                       ["data.max_operand=6"], ["data.system_prompt=Answer."],
                                       ["model.dtype=bfloat16"]])
def test_another_recipe_is_built_not_shipped(overrides):
    cfg = compose(overrides)
    assert tiny.shipped_folder(cfg.model, cfg.data) is None


def test_a_build_shows_its_progress_and_ships_as_built(tmp_path, monkeypatch):
    monkeypatch.setenv("R1EXP_CACHE", str(tmp_path / "cache"))
    lines = []
    folder = tiny.write_shipped(SMALL, root=tmp_path / "shipped", log=lines.append)
    text = "\n".join(lines)
    for pattern in ["building qwen2-", "tokenizer (", "warm-up (learn) 2/8 steps, loss", "warm-up (learn) 8/8 steps",
                    "warm-up (sloppy) 1/4 steps", "warm-up (sloppy) 4/4 steps", "built in", "MB"]:
        assert pattern in text, f"{pattern!r} not in:\n{text}"
    assert len([x for x in lines if "tiny model: warm-up (" in x]) == 8   # a line per quarter of each phase

    monkeypatch.setattr(tiny, "SHIPPED", tmp_path / "shipped")
    monkeypatch.setattr(tiny, "_build_into", no_build)
    cfg = compose(SMALL)
    cached = tiny.ensure_local_model(cfg.model, cfg.data, log=lines.append)
    assert tiny.differences(cached, folder) == []

    monkeypatch.undo()   # writing another recipe for the same task replaces the shipped build
    monkeypatch.setenv("R1EXP_CACHE", str(tmp_path / "cache"))
    other = tiny.write_shipped(["model.warmup.steps=4", "model.warmup.sloppy_steps=0"], root=tmp_path / "shipped",
                               log=lines.append)
    assert list((tmp_path / "shipped").iterdir()) == [other] and other != folder
    assert any(d.startswith("model.safetensors") for d in tiny.differences(other, cached))


def test_the_shared_prefix_loss_is_the_whole_models_loss(tmp_path):
    import torch

    cfg = compose([])
    texts = tiny._warmup_texts(cfg.data, 0.6, 0.9)[:64]
    tokenizer = tiny._train_tokenizer(texts, int(cfg.model.arch.vocab))
    model = tiny._random_model(cfg.model, tokenizer)
    tokenizer = tiny._as_loaded(tokenizer, model, tmp_path)
    ids, targets, lengths, prefix = tiny._tokenized(tokenizer, texts)
    assert 20 <= prefix < int(lengths.min()) - 2   # the system prompt and "What is"; then each question
    labels = torch.full_like(ids, -100)
    labels[:, 1:] = targets[:, :-1]
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
    whole = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    shared = tiny._loss(model, ids, targets[:, :-1], prefix)
    params = list(model.parameters())
    assert torch.allclose(whole, shared, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(whole, params), torch.autograd.grad(shared, params)):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("overrides,steps", [([], 300), (["experiment=tool_use"], 500)], ids=["demo", "tool_use"])
def test_rebuilding_the_recipe_gives_the_shipped_build_bit_for_bit(tmp_path, overrides, steps):
    """`python -m r1exp.models.tiny --check-shipped [experiment=tool_use]`: the warm-up again from the recipe (~15 s
    for the demo's, ~60 s for the tool recipe's on two cores). A difference on another kind of CPU or another torch:
    see `built_with` in the message."""
    proc = subprocess.run([sys.executable, "-m", "r1exp.models.tiny", "--check-shipped", *overrides], check=False,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "R1EXP_CACHE": str(tmp_path)})
    assert proc.returncode == 0 and "equals the shipped build" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"warm-up (learn) {steps}/{steps} steps" in proc.stdout
