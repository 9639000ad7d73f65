"""Settings that fit a model by its size, for a model chosen by name alone (`model.name_or_path=X`, conf/model/
pretrained.yaml): the resolver `${r1exp.size:KEY}` reads X's config.json (r1exp.models.architecture) and answers
from the table below. Anything on the command line wins, as over any preset.

The values follow the anchors, as conf/preset/*.yaml do for the shipped models: LoRA r=16 and a 1e-5 learning rate
up to ~2B parameters (open-r1's small-model recipes, TRL's docs), r=32 and 5e-6 up to ~10B (Unsloth's notebooks),
r=64, 2e-6 and a smaller micro-batch above. A model whose config cannot be found is planned as a medium one; the
pre-flight reports that its architecture is missing.
"""

from __future__ import annotations

import math

SIZE_CLASSES = (   # (largest parameter count, class, settings)
    (2.5e9, "small", dict(lora_r=16, lora_alpha=32, learning_rate=1.0e-5, max_completion_length=1024,
                          num_generations=8, per_device_train_batch_size=16, gradient_accumulation_steps=2)),
    (12e9, "medium", dict(lora_r=32, lora_alpha=64, learning_rate=5.0e-6, max_completion_length=1024,
                          num_generations=8, per_device_train_batch_size=8, gradient_accumulation_steps=4)),
    (math.inf, "large", dict(lora_r=64, lora_alpha=128, learning_rate=2.0e-6, max_completion_length=1024,
                             num_generations=8, per_device_train_batch_size=4, gradient_accumulation_steps=8)),
)
DEFAULT_CLASS = "medium"


def size_class(params: float | None) -> str:
    if not params:
        return DEFAULT_CLASS
    return next(name for top, name, _ in SIZE_CLASSES if params <= top)


def setting(key: str, params: float | None):
    cls = size_class(params)
    values = next(values for _, name, values in SIZE_CLASSES if name == cls)
    if key == "class":
        return cls
    if key not in values:
        raise KeyError(f"r1exp.size has no setting {key!r} (it has: class, {', '.join(values)})")
    return values[key]


def _resolve(key: str, _root_):
    """${r1exp.size:KEY}: the setting of the model named by model.name_or_path."""
    from omegaconf import OmegaConf

    from r1exp.models.architecture import UnknownArchitecture, arch_from_transformers, arch_of, find_config

    name = OmegaConf.select(_root_, "model.name_or_path", default=None)
    found = find_config(name) if isinstance(name, str) and name.strip() else None
    params = None
    if found is not None:
        try:
            params = arch_of(found.config)["params"]
        except UnknownArchitecture:
            params = (arch_from_transformers(found.config) or {}).get("params")
        except (KeyError, TypeError, ValueError):
            params = None
    return setting(str(key), params)


def register() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("r1exp.size"):
        OmegaConf.register_new_resolver("r1exp.size", _resolve)
