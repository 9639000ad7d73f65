"""Where a run's weights come from: a hub id, a local folder, or a model built locally (init=random)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def model_source(cfg: DictConfig, log=print) -> str:
    """A hub id or local folder; models with init=random (and model=tiny) are built locally and cached."""
    if cfg.model.init == "random":
        from r1exp.models import tiny

        return str(tiny.ensure_local_model(cfg.model, cfg.data, log=log))
    path = str(cfg.model.name_or_path)
    return str(Path(path).expanduser()) if Path(path).expanduser().exists() else path
