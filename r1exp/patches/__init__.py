"""Every replacement of an upstream internal (TRL, vLLM, Unsloth, torch), one module per target, and this table of
them: what each replaces and why, the versions it was verified on, what switches it off.

Components ask for patches by name (`Engine.patches` / `Loader.patches`); the version table
(r1exp.versions, rule `versions.patches`) compares the installed versions with each asked-for patch's `verified`
ones before anything loads: a version outside them is a warning that names the patch and its switch, and one in
`breaks` is an error. Import-light: this module is data; the patch modules import what they patch inside their
functions.

Upgrading a package: run `python -m r1exp dry_run=true` with the stack you want (and `loader=unsloth` on a GPU
machine); every patch whose target may have changed is named, with its module and test.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Patch:
    name: str            # the module r1exp/patches/<name>.py
    target: str          # the upstream name it replaces or wraps
    why: str             # one line: what goes wrong without it
    verified: dict       # package -> the versions the patch was read against and tested with
    switch: str          # how to turn it off (or what to use instead where nothing else works)
    test: str            # the test that fails when the patch stops doing its job
    device: str = "any"  # cpu | cuda | any: where it is applied
    breaks: dict = field(default_factory=dict)   # package -> specifier of versions known not to work (an error)
    fails_safe: bool = False   # a target it does not find is left alone (a timing or a quiet console lost, never a
                               # run): another version is then not worth a warning


PATCHES: dict[str, Patch] = {p.name: p for p in (
    Patch("trl_vllm_llm", "trl.generation.vllm_generation.LLM; vllm.LLM (while Unsloth builds its engine)",
          "GRPOConfig has no field for the engine's dtype, eager mode, compile mode, explicit KV cache or batch "
          "limits, and Unsloth picks its own: the engine would not run with the settings the plan computed",
          {"trl": ("1.15.0", "1.16.0"), "vllm": ("0.26.0", "0.31.0")},
          "engine=hf or engine=vllm_server (the engine's settings then go to the server's command line)",
          "tests/test_engine_vllm.py"),
    Patch("vllm_cpu_linear", "vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm",
          "vLLM on CPU empties each linear layer's weight after packing it, so TRL's weight sync fails "
          "('Parameter' object has no attribute 'weight_loader') or generates with stale weights",
          {"vllm": ("0.31.0",)}, "engine=hf (nothing else syncs weights into vLLM on CPU)",
          "tests/test_weight_sync.py", device="cpu", breaks={"vllm": "!=0.31.0"}),
    Patch("exact_sync", "trl.generation.vllm_generation.VLLMGeneration._iter_named_params; "
          "PeftModel.merge_adapter/unmerge_adapter during a sync",
          "TRL merges the LoRA into the base weights and unmerges it at every sync, rounding them each time: a "
          "resumed CPU run then differs from one that never stopped",
          {"trl": ("1.16.0",), "peft": ("0.21.2",)}, "engine=hf", "tests/test_exact_sync.py", device="cpu"),
    Patch("trl_on_policy", "trl.GRPOTrainer._generate_and_score_completions / _compute_loss / "
          "_get_per_token_logps_and_entropies",
          "on-policy, TRL computes pi_old in a no-grad pass the loss's own forward already gives (0.68 s of a "
          "5.05 s step at 7B on an H200)",
          {"trl": ("1.15.0", "1.16.0")}, "loader.reuse_training_logps=false", "tests/test_onpolicy_logps.py"),
    Patch("unsloth_on_policy", "UnslothGRPOTrainer._get_per_token_logps_and_entropies; UnslothEfficientGRPO in "
          "the generated trainer's loss",
          "on-policy, Unsloth's generated step computes pi_old in a no-grad pass (0.60 s of a 4.44 s step at 7B)",
          {"unsloth": ("2026.10.5",), "unsloth_zoo": ("2026.10.5",), "trl": ("1.15.0",)},
          "loader.reuse_training_logps=false", "tests/test_unsloth_onpolicy.py", device="cuda"),
    Patch("unsloth_logits", "unsloth_zoo.rl_replacements.chunked_hidden_states_selective_log_softmax",
          "Unsloth's loss keeps every chunk's float32 logits for backward (9-11 GiB at a 151,936 vocabulary)",
          {"unsloth_zoo": ("2026.10.5",)}, "loader.recompute_logits=false", "tests/test_unsloth_logits.py",
          device="cuda"),
    Patch("unsloth_imports", "unsloth.models.rl.patch_trl_rl_trainers",
          "importing Unsloth rewrites all of TRL's trainers; r1exp trains with GRPO alone (import 6.8 -> 3.4 s)",
          {"unsloth": ("2026.10.5",), "trl": ("1.15.0",)}, "loader.trl_trainers=all",
          "tests/test_unsloth_imports.py", device="cuda"),
    Patch("torch_dynamo", "torch._dynamo.config.disable",
          "Unsloth's GRPO step stalls under torch.compile; turned off only after vLLM compiled its engine",
          {"torch": ("2.11.0",), "unsloth": ("2026.10.5",)}, "loader.compile=true", "tests/test_patches.py",
          device="cuda"),
    Patch("cpu_rank_location", "torch.serialization location tags 'cpu:N'",
          "accelerate gives CPU ranks the device cpu:<rank>; torch cannot load a checkpoint saved there, so a "
          "multi-process CPU run could not be resumed",
          {"torch": ("2.13.0",)}, "distributed=none", "tests/test_patches.py", device="cpu"),
    Patch("timing_hooks", "builtins.__import__ (during the build); trainer, TRL engine and vLLM worker methods",
          "where a step's and a start's time goes (time/* metrics, run.json startup) is not reported by TRL or vLLM",
          {"trl": ("1.15.0", "1.16.0"), "vllm": ("0.26.0", "0.31.0"), "transformers": ("5.17.0",)},
          "none: a method or worker that is not found is left alone and its phase is not timed",
          "tests/test_timing.py", fails_safe=True),
    Patch("trl_completions_table", "the prompt / completion buffers GRPOTrainer.log writes as its completions table",
          "a tool run's completions mix messages with and without tool_calls (and reasoning_content None): "
          "wandb.Table refuses them and the run stopped at its first logged step",
          {"trl": ("1.15.0", "1.16.0"), "wandb": ("0.31.0",)}, "logger=none or ++trainer.log_completions=false",
          "tests/test_tools.py", fails_safe=True),
    Patch("library_output", "transformers.utils.logging's default handler and tqdm hook; torch._logging's "
          "_init_logs; vllm.logger._configure_vllm_root_logger, weight_utils.tqdm, EngineCore.__init__ (stderr)",
          "each library prints through a console handler or bar of its own, past the root logger where r1exp sends "
          "library output to train.log",
          {"transformers": ("5.17.0",), "torch": ("2.13.0",), "vllm": ("0.31.0",)},
          "R1EXP_LIVE=verbose (a hook that no longer fits leaves that output on the console)",
          "tests/test_console.py", fails_safe=True),
)}


def asked_for(*components) -> list[Patch]:
    """The patches the run's components ask for, in table order."""
    names = {name for c in components if c is not None for name in getattr(c, "patches", ())}
    return [p for p in PATCHES.values() if p.name in names]
