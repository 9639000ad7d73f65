"""The run prepares the loader's and the engine's imports before anything imports torch, transformers or PEFT.

Unsloth must be imported before transformers and PEFT (it patches them as it is imported, and warns that its
optimizations may not all apply otherwise), and on CPU libgomp reads OpenMP's wait policy once, when torch is
imported (r1exp/patches/vllm_cpu_linear.py). Both ran too late until session 14: the run's reward monitor imported
transformers (with torch and PEFT) before the build asked the loader to prepare. A real CLI run in a fresh process,
with a loader that writes down what was already imported when it was asked, then stops the run."""

from __future__ import annotations

import json
import os

from conftest import ROOT, run_cli


def test_nothing_heavy_is_imported_before_the_loader_prepares_its_imports(tmp_path):
    probe = tmp_path / "probe.json"
    env = {"R1EXP_IMPORT_PROBE": str(probe), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env = {**{k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}, **env}
    result = run_cli(["loader._target_=components.import_order_probe.ImportOrderProbe", "logger=none"],
                     tmp_path / "run", env=env)
    assert result.code == 2, result.output[-3000:]
    seen = json.loads(probe.read_text())
    assert seen["imported"] == [], seen               # not torch, transformers, PEFT or TRL
    assert seen["GOMP_SPINCOUNT"] == "10000"          # engine=vllm on CPU set it before torch's import
