"""What an inference engine is to r1exp: the base class every engine subclasses (one module + one YAML each).

The YAML (conf/engine/<name>.yaml) names the class with `_target_`; its other keys are the class's typed fields.
The class answers, for the run it is part of:
- `rules`: its validation rows (run only when it is the chosen engine);
- `plan_memory`: its share of the memory plan (terms, notes, the resolved memory fraction);
- `grpo_args`: what it passes to TRL's GRPOConfig; `build_context`: what must hold while the trainer is built;
- `built_rules`: its post-build check (what the built trainer must hold);
- `lifecycle`: what runs around build and training (a server's start and stop);
- `knobs`: its single changes that save memory; `describe`: its line in the dry-run report;
- `settings_to_check`: the engine settings the post-build check reads back from the built engine.
Everything here is import-light: heavy imports happen inside the build-time methods.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict


class Engine(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str
    in_process: bool = False    # a vLLM engine inside the trainer process, which a loader may supply (Unsloth)

    packages: ClassVar[tuple] = ()        # packages it imports, checked against the version table
    uses_vllm: ClassVar[bool] = False     # TRL generates through vLLM
    remote: ClassVar[bool] = False        # generation runs in a separate server process
    rules: ClassVar[tuple] = ()           # r1exp.config.rule.Rule rows
    built_rules: ClassVar[tuple] = ()     # r1exp.checks.built.BuiltRule rows
    deterministic_env: ClassVar[dict] = {}          # environment of its deterministic mode (reproducible=true)
    not_reproducible: ClassVar[str | None] = None   # why reproducible=true cannot be honoured, if it cannot
    deterministic_cost: ClassVar[str | None] = None  # the measured price of its deterministic mode, for the dry run

    def patches(self, device: str) -> tuple:
        """The names of the upstream replacements it needs on `device` (r1exp.patches.PATCHES)."""
        return ()

    def sequence_budget(self, cfg: DictConfig) -> int | None:
        """The engine's max sequence length in tokens, when it has one (vLLM's max_model_len)."""
        return None

    def plan_memory(self, cfg: DictConfig, env, plan, static_gb: float, dynamic_gb: float) -> None:
        """Add the engine's terms to `plan` and set its totals (the loader's facts are already in it:
        `plan.shared_weights`, `plan.loader_sleeps_engine`). No engine of its own: the trainer is all."""
        plan.trainer_gb = static_gb + dynamic_gb
        plan.total_gb = plan.trainer_gb

    def grpo_args(self, cfg: DictConfig, plan, device: str) -> dict:
        return {"use_vllm": False}

    def before_imports(self, cfg: DictConfig, device: str) -> None:
        """Process settings that must precede importing torch (e.g. OpenMP's wait policy)."""

    def build_context(self, cfg: DictConfig, plan, device: str, log=print):
        """The context in which the trainer is built."""
        return contextlib.nullcontext()

    def loader_engine_context(self, cfg: DictConfig, plan, device: str):
        """The context in which a loader builds an engine of its own (Unsloth's fast_inference), so that the
        engine's settings reach it."""
        return contextlib.nullcontext()

    def lifecycle(self, cfg: DictConfig, run_dir, log=print):
        """The context around build and training (a server's start and stop)."""
        return contextlib.nullcontext()

    def own_gpus(self) -> list:
        """GPU indices the engine takes for itself, away from training (a launched server's)."""
        return []

    def knobs(self, cfg: DictConfig, plan) -> list:
        return []

    def describe(self, cfg: DictConfig, plan) -> str:
        return self.name

    def settings_to_check(self, cfg: DictConfig, plan, device: str) -> dict:
        """name -> the value the built engine must report (see r1exp.checks.built)."""
        return {}
