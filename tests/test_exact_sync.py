"""TRL's weight sync leaves the trainer's base weights exactly as they were (r1exp.patches.exact_sync).

TRL's real iterator (`VLLMGeneration._iter_named_params`, the one its colocate and server syncs walk) runs over a
real PEFT LoRA model, with the LoRA's B matrices moved off zero so that merging changes something:
- the control: TRL unpatched merges and unmerges in place, and the base weights come back with rounding in them;
- patched: every tensor handed to vLLM equals what PEFT's own merge_adapter() gives, bit for bit, and the names
  are TRL's; afterwards the base weights are bit-identical to before, for many syncs in a row;
- a consumer that keeps the tensors without copying them (vLLM's packed broadcast) still has the merged values;
- PEFT's bookkeeping says unmerged afterwards, and a model without LoRA goes through TRL's path unchanged.
The resume test (tests/test_resume.py, slow) shows the effect on a whole run: engine=vllm resumes bit-exactly.
"""

from __future__ import annotations

import copy

import pytest
import torch

from r1exp.patches import exact_sync

DTYPES = [torch.float32, torch.bfloat16]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(32, 48)
        self.q_proj = torch.nn.Linear(48, 48, bias=True)
        self.v_proj = torch.nn.Linear(48, 48, bias=False)
        self.out = torch.nn.Linear(48, 32, bias=False)

    def forward(self, x):
        return self.out(self.v_proj(self.q_proj(self.embed(x))))


def lora_model(dtype):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(Tiny().to(dtype), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a trained adapter: merging changes the weights
    return model


def generation_for(model):
    """TRL's VLLMGeneration, just enough of it for its weight iterator (no engine)."""
    from accelerate import Accelerator
    from trl.distributed import DistributedBackend
    from trl.generation.vllm_generation import VLLMGeneration

    gen = VLLMGeneration.__new__(VLLMGeneration)
    gen.model = model
    gen._dist = DistributedBackend(Accelerator(cpu=True))
    return gen


def base_weights(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def sync(gen) -> dict:
    """What vLLM's load_weights would receive, copied at the moment TRL hands it over."""
    return {name: tensor.clone() for name, tensor in type(gen)._iter_named_params(gen)}


def identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def unpatched():
    """TRL's class as shipped, for the control; the patch (class-wide) is put back afterwards if it was there."""
    was_installed = exact_sync.is_installed()
    exact_sync.uninstall()
    yield
    if was_installed:
        exact_sync.install()


@pytest.mark.parametrize("dtype", DTYPES)
def test_control_trl_merge_and_unmerge_leaves_rounding_in_the_base_weights(unpatched, dtype):
    model = lora_model(dtype)
    before = base_weights(model)
    gen = generation_for(model)
    for _ in range(3):
        sync(gen)
    after = base_weights(model)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed, "TRL's in-place merge/unmerge is expected to round the base weights"


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_patched_sync_sends_peft_merged_weights_and_keeps_the_base_bits(dtype):
    exact_sync.install()
    assert exact_sync.is_installed()
    model = lora_model(dtype)
    reference = copy.deepcopy(model)
    reference.merge_adapter()
    expected = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p.detach().clone()
                for n, p in reference.named_parameters() if "lora_" not in n}
    before = base_weights(model)
    gen = generation_for(model)
    for _ in range(5):
        sent = sync(gen)
        assert identical(sent, expected)
        assert identical(base_weights(model), before)
    assert not any(getattr(m, "merged", False) for m in model.modules())


def test_a_consumer_may_keep_the_tensors_until_the_end():
    """vLLM's packed broadcast (TRL's server mode) keeps each tensor until its buffer is full: the tensors handed
    over must still hold the merged values after the iteration has moved on and finished."""
    exact_sync.install()
    model = lora_model(torch.float32)
    reference = copy.deepcopy(model)
    reference.merge_adapter()
    gen = generation_for(model)
    kept = dict(type(gen)._iter_named_params(gen))  # no copies taken
    expected = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p.detach()
                for n, p in reference.named_parameters() if "lora_" not in n}
    assert identical(kept, expected)


def test_install_is_idempotent():
    from trl.generation.vllm_generation import VLLMGeneration

    exact_sync.install()
    first = VLLMGeneration._iter_named_params
    exact_sync.install()
    assert VLLMGeneration._iter_named_params is first


def test_a_model_without_lora_goes_through_trl_unchanged():
    exact_sync.install()
    torch.manual_seed(0)
    model = Tiny()
    sent = sync(generation_for(model))
    assert identical(sent, {n: p.detach() for n, p in model.named_parameters()})
