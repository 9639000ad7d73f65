"""A model's architecture comes from its own config.json (r1exp/models/architecture.py, families.py).

The counts are held against transformers itself: every public config under tests/fixtures/model_configs is built on
the meta device (no memory, no download) and its parameters and linear modules compared with what r1exp reads
from the JSON alone, without importing transformers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1exp.models import architecture
from r1exp.models.architecture import arch_disagreements, arch_of, fill_arch, targeted
from r1exp.models.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "fixtures" / "model_configs"
FIXTURES = sorted(p for p in CONFIGS.iterdir() if (p / "config.json").is_file())


def _meta_model(folder: Path):
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        try:
            return transformers.AutoModelForCausalLM.from_config(config)
        except ValueError:   # a vision-language model (Gemma 3 4B)
            return transformers.AutoModelForImageTextToText.from_config(config)


@pytest.mark.parametrize("folder", FIXTURES, ids=[p.name for p in FIXTURES])
def test_counts_match_transformers(folder):
    """Parameters (MoE: all experts) and LoRA-targetable linear modules, exactly as transformers builds the model."""
    import torch

    arch = arch_of(json.loads((folder / "config.json").read_text()))
    model = _meta_model(folder)
    assert arch["params"] == sum(p.numel() for p in model.parameters())
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(arch["modules"]) == linear - {"lm_head"}


def test_family_defaults_are_transformers_defaults():
    """What a config.json may leave out is filled with its config class's own default."""
    import transformers

    for name, family in FAMILIES.items():
        config = transformers.AutoConfig.for_model(name)
        config = getattr(config, "text_config", None) or config
        for key, value in family.defaults:
            assert getattr(config, key) == value, (name, key)


def test_mixture_of_experts_counts_active_and_total():
    arch = arch_of(json.loads((CONFIGS / "Qwen__Qwen3-30B-A3B" / "config.json").read_text()))
    assert arch["experts"] == 128 and arch["experts_per_token"] == 8
    assert 30.0e9 < arch["params"] < 31.0e9 and 3.0e9 < arch["active_params"] < 3.6e9   # "30B-A3B"


def test_unknown_family_is_named():
    with pytest.raises(architecture.UnknownArchitecture, match="gpt_bigcode"):
        arch_of({"model_type": "gpt_bigcode", "n_embd": 1})


GRANITE = {"architectures": ["GraniteForCausalLM"], "model_type": "granite", "hidden_size": 2048,
           "intermediate_size": 8192, "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8,
           "vocab_size": 49155, "max_position_embeddings": 131072, "tie_word_embeddings": True}


def test_a_family_the_table_lacks_is_counted_by_transformers(tmp_path):
    """Granite is not in the family table: transformers builds it on the meta device and r1exp counts that."""
    folder = tmp_path / "granite"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(GRANITE))
    cfg = _cfg(folder)
    assert fill_arch(cfg) == []
    assert cfg.model.arch.family == "granite" and 2.5e9 < cfg.model.arch.params < 2.6e9   # granite-3.x-2b
    assert "q_proj" in cfg.model.arch.modules and cfg.model.arch.kv_heads == 8


def test_a_model_type_nobody_knows_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mystery_lm", "hidden_size": 64}))
    [p] = fill_arch(_cfg(folder))
    assert p.rule == "model.arch" and "mystery_lm" in p.why and "model.arch" in p.fix


@pytest.mark.parametrize("wanted, picked", [
    ("all-linear", ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]),
    (["q_proj", "v_proj"], ["q_proj", "v_proj"]),
    (["qkv_proj"], []),
    (".*proj", ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]),
])
def test_targeted_modules_follow_peft(wanted, picked):
    arch = arch_of(json.loads((CONFIGS / "Qwen__Qwen2.5-7B-Instruct" / "config.json").read_text()))
    assert targeted(arch, wanted) == picked


def test_phi_fused_modules():
    arch = arch_of(json.loads((CONFIGS / "microsoft__phi-4" / "config.json").read_text()))
    assert targeted(arch, "all-linear") == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]


def _cfg(name_or_path, arch=None, init="pretrained"):
    return OmegaConf.create({"model": {"name_or_path": str(name_or_path), "init": init, "arch": arch}})


def test_fill_from_a_local_folder(tmp_path):
    folder = tmp_path / "mistral"
    shutil.copytree(CONFIGS / "mistralai__Mistral-7B-Instruct-v0.3", folder)
    cfg = _cfg(folder)
    assert fill_arch(cfg) == []
    assert cfg.model.arch.family == "mistral" and cfg.model.arch.layers == 32
    assert cfg.model.arch.source == str(folder / "config.json")


def test_fill_from_the_hugging_face_cache(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-8B" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    shutil.copy(CONFIGS / "Qwen__Qwen3-8B" / "config.json", snapshot / "config.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(architecture, "_FOUND", {})
    cfg = _cfg("Qwen/Qwen3-8B")
    assert fill_arch(cfg) == []
    assert cfg.model.arch.family == "qwen3" and 8.0e9 < cfg.model.arch.params < 8.3e9


def test_a_yaml_arch_that_disagrees_names_the_field(tmp_path):
    folder = tmp_path / "qwen"
    shutil.copytree(CONFIGS / "Qwen__Qwen2.5-Math-7B", folder)
    yaml_arch = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / "qwen7b.yaml").arch)
    problems = fill_arch(_cfg(folder, yaml_arch))
    assert [p.key for p in problems] == ["model.arch.max_position"]      # Qwen2.5-Math-7B: 4,096 positions
    assert "4096" in problems[0].why


def test_no_config_and_no_yaml_arch_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(architecture, "_FOUND", {})
    problems = fill_arch(_cfg("someone/not-downloaded"))
    assert [p.rule for p in problems] == ["model.arch"] and "hf download someone/not-downloaded" in problems[0].fix


def test_a_yaml_arch_plans_a_model_that_is_not_downloaded(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(architecture, "_FOUND", {})
    yaml_arch = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / "qwen7b.yaml").arch)
    cfg = _cfg("Qwen/Qwen2.5-7B-Instruct", yaml_arch)
    assert fill_arch(cfg) == [] and cfg.model.arch.layers == 28


def test_presets_agree_with_the_real_configs():
    """Each shipped preset's YAML arch is the real model's (the fixture of the same hub id)."""
    for preset in sorted((ROOT / "conf" / "model").glob("*.yaml")):
        model = OmegaConf.load(preset)
        name = str(model.get("name_or_path") or "")   # a preset that extends another (defaults) may name none
        folder = CONFIGS / name.replace("/", "__")
        if model.get("arch") is None or not name or not folder.is_dir():
            continue
        real = arch_of(json.loads((folder / "config.json").read_text()))
        assert arch_disagreements(OmegaConf.to_container(model.arch), real) == [], preset.name


def _dry(*overrides, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "r1exp", "dry_run=true", "logger=none", *overrides],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "400", **(env or {})})


def test_a_name_alone_is_a_complete_model_choice(tmp_path):
    """model.name_or_path=<folder with a Mistral config> plans Mistral's 7.25B, not the default model's shape."""
    folder = tmp_path / "Mistral-7B"
    shutil.copytree(CONFIGS / "mistralai__Mistral-7B-Instruct-v0.3", folder)
    result = _dry(f"model.name_or_path={folder}", "hardware.gpu_memory_gb=80")
    assert result.returncode == 0, result.stderr
    assert "7.25B" in result.stdout and f"arch from {folder}" in result.stdout
    assert "lr=5e-06" in result.stdout   # the medium size class, not the tiny demo's 1e-3


def test_target_modules_the_architecture_lacks_stop_the_dry_run(tmp_path):
    folder = tmp_path / "phi"
    shutil.copytree(CONFIGS / "microsoft__phi-4", folder)
    result = _dry(f"model.name_or_path={folder}", "model.lora.target_modules=[q_proj,v_proj]",
                  "hardware.gpu_memory_gb=80")
    assert result.returncode == 2
    assert "model.lora.target_modules" in result.stderr and "qkv_proj" in result.stderr


@pytest.mark.parametrize("overrides, chosen", [
    (["model.name_or_path=X"], "pretrained"),                       # a name alone: the model it names
    (["model=qwen7b", "model.name_or_path=X"], "qwen7b"),           # a preset and a local copy of it: the preset
    (["experiment=unsloth_qwen3_4b", "model.name_or_path=X"], None),  # a recipe chooses its model
    (["trainer.max_steps=2"], None),
])
def test_a_name_alone_chooses_model_pretrained(overrides, chosen):
    from r1exp.config.compose import choose_model_by_name

    added = [o for o in choose_model_by_name(overrides) if o not in overrides]
    assert added == (["model=pretrained"] if chosen == "pretrained" else [])


@pytest.mark.parametrize("folder, size, rank, lr", [
    ("Qwen__Qwen3-0.6B", "small", 16, 1e-5),
    ("meta-llama__Llama-3.1-8B-Instruct", "medium", 32, 5e-6),
    ("Qwen__Qwen2.5-72B-Instruct", "large", 64, 2e-6),
])
def test_settings_follow_the_size_class(folder, size, rank, lr):
    from r1exp.config.compose import compose
    from r1exp.models.size_class import size_class

    cfg = compose([f"model.name_or_path={CONFIGS / folder}"])
    assert cfg.model.lora.r == rank and cfg.trainer.learning_rate == lr
    assert size_class(arch_of(json.loads((CONFIGS / folder / "config.json").read_text()))["params"]) == size
