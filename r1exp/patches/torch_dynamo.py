"""torch.compile off for Unsloth's GRPO step: `torch._dynamo.config.disable = True`, set after Unsloth's vLLM
engine is built.

Why: on the H200 stack (torch 2.11, vLLM 0.26, Unsloth 2026.10.5) Unsloth's GRPO loop stalled under torch.compile
(no step within minutes). Setting TORCHDYNAMO_DISABLE in the environment would also stop vLLM compiling its engine,
so dynamo is turned off only once the engine exists. Switch: loader.compile=true. Verified on the versions in
r1exp.patches.PATCHES["torch_dynamo"].
"""

from __future__ import annotations


def disable() -> bool:
    """Turn dynamo off for the rest of the process; returns what it was before (True: it was already off)."""
    import torch._dynamo

    before = bool(torch._dynamo.config.disable)
    torch._dynamo.config.disable = True
    return before
