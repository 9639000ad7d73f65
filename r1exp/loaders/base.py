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
    trains_adapter: ClassVar[bool] = True  # trains a LoRA adapter (False: every weight, loader=full)
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

    def adopt(self, cfg: DictConfig) -> list:
        """What the loader's library changes in the trainer's settings by its own rules (Unsloth raises the batch),
        applied to `cfg` in place so that the checks and the plan see the run it will be; returns warnings naming
        each change. Nothing by default."""
        return []

    def utilization_is_ceiling(self, engine_in_process: bool) -> bool:
        """True when an explicit engine.gpu_memory_utilization is a ceiling the loader's library lowers to what fits
        beside training (Unsloth's fast_inference), rather than a reservation to refuse."""
        return False

    def plan_notes(self, cfg: DictConfig, plan) -> list[str]:
        """What the plan should say about choices the loader's library makes otherwise (and which one wins)."""
        return []

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

    def finish_tokenizer(self, cfg: DictConfig, tokenizer):
        """The tokenizer as the run uses it: model.chat_template in place of its own (a template, or a file holding
        one), and a pad token (the EOS token when it has none)."""
        template = chat_template_of(cfg)
        if template is not None:
            tokenizer.chat_template = template
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    def reuse_note(self) -> str:
        """What `describe` says about `reuse_training_logps`: nothing for the default."""
        return "" if self.reuse_training_logps else " reuse_training_logps=false"


def chat_template_of(cfg: DictConfig) -> str | None:
    """model.chat_template: a Jinja template, or the path of a file holding one; None to keep the tokenizer's."""
    from pathlib import Path

    value = cfg.model.get("chat_template")
    if not value:
        return None
    text = str(value)
    if "{" not in text and Path(text).expanduser().is_file():
        return Path(text).expanduser().read_text()
    return text


def lora_target_modules(cfg: DictConfig, names_only: bool = False):
    """model.lora.target_modules as PEFT takes it ("all-linear", a regex or names); `names_only`: the module names
    it picks on this architecture (for a library that takes names only)."""
    from omegaconf import OmegaConf

    value = cfg.model.lora.target_modules
    if isinstance(value, str) and not names_only:
        return value
    if isinstance(value, str):
        from r1exp.models.architecture import targeted

        return targeted(cfg.model.arch, value)
    return list(OmegaConf.to_container(value, resolve=True))
