"""Loading the policy model and tokenizer: plain transformers + PEFT, or Unsloth (with its own vLLM engine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Loaded:
    model: object               # a model object (or a path TRL can load)
    tokenizer: object
    peft_config: object | None  # a LoraConfig for TRL to apply, or None when the model is already a PeftModel
    path: str                   # where the weights came from (a hub id or a local folder)


def model_source(cfg, log=print) -> str:
    """A hub id or local folder; models with init=random (and model=tiny) are built locally and cached."""
    if cfg.model.init == "random":
        from r1exp import tiny

        return str(tiny.ensure_local_model(cfg.model, cfg.data, log=log))
    path = str(cfg.model.name_or_path)
    return str(Path(path).expanduser()) if Path(path).expanduser().exists() else path


def prepare_imports(cfg) -> None:
    """Before anything imports transformers or TRL: Unsloth must come first (and its env before it)."""
    if cfg.loader.name == "unsloth":
        from r1exp.loaders import unsloth_loader

        unsloth_loader.prepare_imports(cfg)


def load(cfg, log=print) -> Loaded:
    source = model_source(cfg, log=log)
    if cfg.loader.name == "unsloth":
        from r1exp.loaders import unsloth_loader

        return unsloth_loader.load(cfg, source)
    from r1exp.loaders import peft_loader

    return peft_loader.load(cfg, source)
