"""What a model loader is to r1exp: the base class every loader subclasses (one module + one YAML each).

The YAML (conf/loader/<name>.yaml) names the class with `_target_`; its other keys are the class's typed fields.
The class answers: `prepare_imports` (what must happen before transformers/TRL are imported), `load` (model,
tokenizer and the LoRA config TRL applies), `trainer_class` (the GRPOTrainer it trains with), `rules` (its validation
rows), `shares_engine_weights`, `sleeps_own_engine` and `adjust_terms` (its share of the memory plan), `built_rules`
(its post-build check), `alternative_knob` (when switching to it saves memory) and `describe` (its dry-run line).

A loader never looks up the engine, nor an engine the loader: the pre-flight resolves both once
(r1exp.components.Resolved) and they exchange plain values — whether the engine runs in this process, the memory plan,
the context in which the engine's settings reach an engine the loader builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict


@dataclass
class Loaded:
    model: object               # a model object (or a path TRL can load)
    tokenizer: object
    peft_config: object | None  # a LoraConfig for TRL to apply, or None when the model is already a PeftModel
    path: str                   # where the weights came from (a hub id or a local folder)


class Loader(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str
    load_in_4bit: bool = False
    reuse_training_logps: bool = True   # on-policy, pi_old is the loss forward's own (r1exp/patches/on_policy.py)

    packages: ClassVar[tuple] = ()        # packages it imports, checked against the version table
    needs_gpu: ClassVar[bool] = False     # cannot be imported without a CUDA GPU
    rules: ClassVar[tuple] = ()           # r1exp.config.rule.Rule rows
    built_rules: ClassVar[tuple] = ()     # r1exp.checks.built.BuiltRule rows
    not_reproducible: ClassVar[str | None] = None   # why reproducible=true cannot be honoured, if it cannot
    own_trainer_fields: ClassVar[dict] = {}  # GRPOConfig fields the loader's own GRPOConfig class decides: {field: why}
    on_policy_trainer: ClassVar[str | None] = None  # module whose trainer_class() reuses the loss's log-probs
    on_policy_patch: ClassVar[str | None] = None    # its name in r1exp.patches.PATCHES

    def patches(self, device: str) -> tuple:
        """The names of the upstream replacements it needs on `device` (r1exp.patches.PATCHES)."""
        return (self.on_policy_patch,) if self.reuse_training_logps and self.on_policy_patch else ()

    def prepare_imports(self, cfg: DictConfig) -> None:
        """Before anything imports transformers or TRL."""

    def load(self, cfg: DictConfig, source: str, plan, engine_context) -> Loaded:
        """The model from `source`. `plan` is the run's memory plan; a loader that builds an engine of its own
        (Unsloth's fast_inference) builds it inside `engine_context`, where the chosen engine's settings hold."""
        raise NotImplementedError

    def trainer_class(self):
        """The GRPOTrainer class the run builds; after `load` (Unsloth patches TRL's class as it is imported): with
        `reuse_training_logps`, the one `on_policy_trainer` builds on it, else TRL's (as patched)."""
        if self.reuse_training_logps and self.on_policy_trainer:
            import importlib

            return importlib.import_module(self.on_policy_trainer).trainer_class()
        from trl import GRPOTrainer

        return GRPOTrainer

    def shares_engine_weights(self, engine_in_process: bool) -> bool:
        """True when the engine (in this process or not) generates with this loader's own copy of the weights."""
        return False

    def sleeps_own_engine(self) -> bool:
        """True when the loader sleeps the engine it shares weights with while the trainer computes gradients
        (the engine's plan then keeps only what a sleeping engine holds)."""
        return False

    def adjust_terms(self, cfg: DictConfig, terms: dict, micro: int) -> None:
        """Replace the trainer's memory terms (GiB) where this loader's training loop differs from TRL's."""

    @classmethod
    def alternative_knob(cls, cfg: DictConfig, current, engine, option: str, option_cfg) -> object | None:
        """A Knob switching the run from the `current` loader to this one (option = its YAML's name), where that
        saves memory with this `engine`."""
        return None

    def describe(self, cfg: DictConfig) -> str:
        return self.name + (" load_in_4bit=true" if self.load_in_4bit else "") + self.reuse_note()

    def reuse_note(self) -> str:
        """What `describe` says about `reuse_training_logps`: nothing for the default."""
        return "" if self.reuse_training_logps else " reuse_training_logps=false"
