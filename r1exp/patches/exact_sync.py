"""TRL's weight sync for a LoRA model without touching the base weights: merged values go to vLLM, the trainer
keeps the exact bits it loaded.

The cause. Before every generation TRL pushes the trainer's weights into vLLM
(`VLLMGeneration._iter_named_params`): for a PEFT model it calls `model.merge_adapter()` (W += B @ A * s for every
LoRA layer), hands each merged weight to vLLM, then `model.unmerge_adapter()` (W -= B @ A * s). In floating point
(W + d) - d is not W: every sync leaves rounding in the trainer's frozen base weights (measured on the LoRA
layers of tests/test_exact_sync.py, |W| ~ 0.07: after one sync 18% of the elements are off by up to 1.5e-8 in
float32 and by up to 1e-3, one bfloat16 step, in bfloat16; as the adapter changes every step, the residues of
successive syncs add up). A run that never stopped carries that residue; a run resumed from a checkpoint reloads
clean base weights, so its loss differed by ~3e-7 from the first resumed step on and its sampling drifted soon
after.

The fix. While TRL iterates, `merge_adapter` merges nothing and `unmerge_adapter` undoes nothing; each LoRA layer's
base weight (and bias) is merged just before TRL reads it, by PEFT's own `layer.merge()` (so vLLM receives the very
values TRL's merge gives) into a copy, which TRL hands to vLLM; the layer's own tensor is never written. Extra
memory: one layer's weight while vLLM copies it (colocate), or the tensors of one broadcast buffer (server mode:
vLLM's packed broadcast keeps the tensors until its buffer is full, so they must stay valid after the next one
is asked for).
Applies to both TRL modes that use this iterator (colocate, server); FSDP's path is left to TRL.

`install()` patches the class once (idempotent, checked by `is_installed()`); TRL versions whose iterator is
missing stop with an error naming the version.
"""

from __future__ import annotations

import contextlib

from r1exp.errors import ConfigError, Problem

TRL_CLASS = ("trl.generation.vllm_generation", "VLLMGeneration", "_iter_named_params")
MARK = "_r1exp_exact_sync"


def _trl_version() -> str:
    from importlib.metadata import version

    return version("trl")


def _lora_layers(model) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer) and hasattr(m, "get_base_layer")]


def _base_tensors(layer) -> dict:
    """{data_ptr: attribute name} of the tensors a merge of this layer writes: its base layer's weight and bias."""
    base = layer.get_base_layer()
    out = {}
    for attr in ("weight", "bias"):
        tensor = getattr(base, attr, None)
        if tensor is not None:
            out[tensor.data.data_ptr()] = attr
    return out


@contextlib.contextmanager
def merged(layer):
    """Inside the block the layer's base weight and bias are fresh copies holding the merged values (PEFT's own
    merge), given as {"weight": tensor, "bias": tensor}; on exit the layer gets back its original tensors, which the
    merge never touched. The copies belong to the caller: a consumer may keep them (vLLM's packed broadcast for
    TRL's server mode holds each tensor until its buffer is full)."""
    base = layer.get_base_layer()
    originals = {attr: getattr(base, attr).data for attr in ("weight", "bias") if getattr(base, attr, None) is not None}
    try:
        for attr, data in originals.items():
            getattr(base, attr).data = data.clone()
        from peft.tuners.tuners_utils import onload_layer

        with onload_layer(layer):
            layer.merge()  # the active adapters, as TRL's model.merge_adapter() merges them
        yield {attr: getattr(base, attr).data for attr in originals}
    finally:
        for attr, data in originals.items():
            getattr(base, attr).data = data
        layer.merged_adapters.clear()


def exact_iter_named_params(original):
    def _iter_named_params(self):
        from accelerate.utils import is_peft_model

        model = self.model
        if not is_peft_model(model) or getattr(self._dist, "is_fsdp", False):
            yield from original(self)
            return
        owners: dict = {}

        def record_layers(*args, **kwargs):  # called by TRL where it would merge (parameters gathered)
            getattr(model.base_model, "_check_merge_allowed", lambda: None)()  # PEFT's refusals stay
            for layer in _lora_layers(model):
                for ptr, attr in _base_tensors(layer).items():
                    owners[ptr] = (layer, attr)

        with _replaced(model, merge_adapter=record_layers, unmerge_adapter=lambda *a, **k: None):
            for name, tensor in original(self):
                owner = owners.get(tensor.data_ptr())
                if owner is None:
                    yield name, tensor
                    continue
                layer, attr = owner
                with merged(layer) as tensors:
                    yield name, tensors[attr]

    setattr(_iter_named_params, MARK, True)
    _iter_named_params.__wrapped__ = original  # TRL's own, for uninstall() and the tests' control
    return _iter_named_params


@contextlib.contextmanager
def _replaced(obj, **attrs):
    """Instance attributes set for the block; whatever the instance had before comes back."""
    missing = object()
    before = {k: obj.__dict__.get(k, missing) for k in attrs}
    for k, v in attrs.items():
        object.__setattr__(obj, k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is missing:
                object.__delattr__(obj, k)
            else:
                object.__setattr__(obj, k, v)


def _trl_class():
    import importlib

    module_name, class_name, method = TRL_CLASS
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if cls is None or not callable(getattr(cls, method, None)):
        raise ConfigError([Problem(
            "engine.name", "vllm",
            f"TRL {_trl_version()} has no {class_name}.{method} in {module_name}: r1exp cannot keep the base weights "
            f"untouched by the LoRA merge of its weight sync",
            "install the TRL version of the r1exp stack (pyproject.toml extras, docs/gpu.md)", rule="engine.trl.exact_sync")])
    return cls


def install() -> None:
    cls = _trl_class()
    method = TRL_CLASS[2]
    if not getattr(getattr(cls, method), MARK, False):
        setattr(cls, method, exact_iter_named_params(getattr(cls, method)))


def uninstall() -> None:
    cls = _trl_class()
    method = TRL_CLASS[2]
    current = getattr(cls, method)
    if getattr(current, MARK, False):
        setattr(cls, method, current.__wrapped__)


def is_installed() -> bool:
    cls = _trl_class()
    return bool(getattr(getattr(cls, TRL_CLASS[2]), MARK, False))
