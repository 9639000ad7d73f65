"""Every option of every config group composes with the defaults, and the config tree has the names DESIGN.md fixes."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from r1exp.config.compose import CONF_DIR, compose

GROUPS = ["model", "loader", "engine", "data", "reward", "trainer", "logger", "experiment"]
REQUIRED_OPTIONS = {
    "model": {"tiny", "qwen0_5b", "qwen1_5b", "qwen3b", "qwen7b", "qwen3_4b", "llama3_8b"},
    "loader": {"peft", "unsloth"},
    "engine": {"vllm", "vllm_server", "hf"},
    "data": {"arithmetic"},
    "reward": {"accuracy", "format"},
    "trainer": {"grpo"},
    "logger": {"wandb", "none"},
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def all_group_options():
    return [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.parametrize("group,required", sorted(REQUIRED_OPTIONS.items()))
def test_required_options_exist(group, required):
    assert required <= set(options(group))


@pytest.mark.parametrize("group,option", all_group_options())
def test_every_option_composes_and_resolves(group, option):
    override = f"{group}=[{option}]" if group == "reward" else f"{group}={option}"
    cfg = compose([override])
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if group == "reward":
        assert set(resolved["reward"]) == {option}
    elif group != "experiment":
        assert resolved[group], f"{group}={option} composed to an empty group"


def test_defaults_list_and_top_level_keys():
    cfg = compose([])
    for key in ("seed", "dry_run", "name", "hardware"):
        assert key in cfg
    assert set(cfg.hardware) >= {"device", "num_gpus", "gpu_memory_gb"}
    assert set(cfg.reward) == {"accuracy", "format"}
    assert cfg.model.arch.family == "qwen2" and cfg.model.init == "random"


@pytest.mark.parametrize("option", sorted(REQUIRED_OPTIONS["model"] - {"tiny"}))
def test_real_models_carry_their_architecture(option):
    arch = compose([f"model={option}"]).model.arch
    assert arch.layers > 0
    assert arch.head_dim or arch.hidden % arch.heads == 0
    assert arch.heads % arch.kv_heads == 0
    assert arch.vocab > 100_000 and arch.params > 4e8


def test_unsloth_fast_inference_follows_the_engine():
    assert compose(["loader=unsloth", "engine=vllm"]).loader.fast_inference is True
    assert compose(["loader=unsloth", "engine=hf"]).loader.fast_inference is False
    assert compose(["loader=unsloth", "engine=vllm_server"]).loader.fast_inference is False
