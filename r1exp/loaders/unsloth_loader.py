"""loader=unsloth: Unsloth's FastLanguageModel, with its own in-process vLLM engine when fast_inference is on.

Import order matters and is owned here: UNSLOTH_VLLM_STANDBY must be in the environment before `unsloth` is
imported, and `unsloth` must be imported before TRL, transformers and PEFT so that its patches apply
(`prepare_imports`, called by the run before anything heavy). With fast_inference=True the model carries
`model.vllm_engine` (also after get_peft_model); TRL then generates through it with the LoRA passed per request
(shared weights, no merge). The post-build rows below verify that.

The mistake r1exp was born from: with an in-process vLLM engine and fast_inference=false, older Unsloth fails
after minutes of loading with "'PeftModelForCausalLM' object has no attribute 'vllm_engine'", and Unsloth 2026.10
silently lets TRL start a second engine with a second copy of the weights. `fast_inference` follows the engine by
interpolation (conf/loader/unsloth.yaml), so only an explicit wrong override trips the rule.

On the H200 stack (torch 2.11, vLLM 0.26, Unsloth 2026.10.5) Unsloth's GRPO loop stalls under torch.compile: with
Unsloth's own compile off (UNSLOTH_COMPILE_DISABLE=1) the first step finished and the second did not within 90 s;
with TorchDynamo off as well it trains at ~1.9 s/step (docs/benchmarks.md). TORCHDYNAMO_DISABLE=1 in the
environment also stops vLLM from compiling its engine at start-up ("aot_compile is not supported"), so r1exp turns
dynamo off only after the engine is built. `loader.compile: true` leaves both on.

Unsloth builds its engine itself, and picks some of its settings from its own tables: `max_num_seqs` from the size
of the KV cache (32 sequences for a 64-completion step with the planned memory fraction on the H200, so every
generation ran in two waves), Inductor compilation of the engine. The engine's settings replace those choices while
Unsloth builds it (`Engine.loader_engine_context`), as they reach TRL's own engine, and the post-build check reads
them back. On the H200 (docs/benchmarks.md) Unsloth's step is then 0.90-1.16x TRL colocate's at 0.5B, 0.92x at
1.5B and 0.96x at 7B.

Memory: Unsloth's training loop is not TRL's, so its terms are its own (`adjust_terms`). Its loss held the
micro-batch's logits in float32 for the backward, the largest term of every Unsloth run on the H200;
`recompute_logits` (the default) has the loss recompute them block by block instead (r1exp/patches/unsloth_logits.py).

Its trainer ran the policy once more, without gradients, over every completion before the loss (pi_old for the
importance-sampling correction); on-policy, `reuse_training_logps` (the default) takes pi_old from the loss's own
forward instead (r1exp/patches/unsloth_on_policy.py).

At import Unsloth generates its version of every TRL trainer; `trl_trainers=grpo` (the default) has it generate the
GRPO trainer alone, the one r1exp trains with (r1exp/patches/unsloth_imports.py).
"""

from __future__ import annotations

import contextlib
import os
from typing import ClassVar, Literal

from omegaconf import DictConfig
from pydantic import Field

from r1exp.config.rule import Rule, get
from r1exp.config.rule import BuiltRule
from r1exp.patches import torch_dynamo
from r1exp.errors import Problem
from r1exp.loaders.base import Loaded, Loader, lora_target_modules
from r1exp.versions import INSTALL


def check_fast_inference(ctx):
    """Unsloth + in-process vLLM without fast_inference, or fast_inference with an engine that never uses it."""
    in_process, fast = ctx.engine.in_process, ctx.loader.fast_inference
    if in_process and not fast:
        yield Problem("loader.fast_inference", fast,
                      f"loader=unsloth with engine={ctx.engine.name} (in-process) must load the model with "
                      "fast_inference=true: without it older Unsloth fails with \"'PeftModelForCausalLM' object has "
                      "no attribute 'vllm_engine'\", and Unsloth 2026.10 silently starts a second vLLM engine with a "
                      "second copy of the weights",
                      "drop the loader.fast_inference override (it follows the engine by default), or use engine=hf")
    elif fast and not in_process:
        yield Problem("loader.fast_inference", fast,
                      f"fast_inference=true starts Unsloth's vLLM engine, but engine={ctx.engine.name} does not "
                      "generate with it: its memory would be wasted",
                      "drop the loader.fast_inference override, or use an in-process engine (engine=vllm)",
                      severity="warning")


def check_no_server(ctx):
    if ctx.engine.remote:
        yield Problem("engine.name", ctx.engine.name,
                      "Unsloth generates with its own in-process vLLM engine (it forces TRL's colocate mode); a "
                      "separate vLLM server is not supported with loader=unsloth",
                      "use engine=vllm (Unsloth fast_inference, shared weights) or loader=peft with the server")


def check_lora_rank(ctx):
    rank, r = ctx.loader.max_lora_rank, get(ctx.cfg, "model.lora.r")
    if isinstance(r, int) and rank < r:
        yield Problem("loader.max_lora_rank", rank,
                      f"Unsloth's vLLM engine is built for LoRA ranks up to max_lora_rank, below model.lora.r={r}",
                      f"set loader.max_lora_rank={r} or drop the override (it follows model.lora.r)")


def check_needs_gpu(ctx):
    if not ctx.env.has_cuda:
        yield Problem("loader.name", ctx.loader.name,
                      "Unsloth cannot be imported without a CUDA GPU (\"Unsloth cannot find any torch accelerator\")",
                      "run on a GPU machine, or use loader=peft here; `dry_run=true` plans an Unsloth run anywhere")


def check_installed(ctx):
    if "unsloth" not in ctx.env.versions:
        yield Problem("loader.name", ctx.loader.name, "Unsloth is not installed here",
                      f"{INSTALL['gpu']} (installs unsloth and unsloth_zoo with the GPU stack), or use loader=peft")


def check_four_bit_gpu(ctx):
    if ctx.loader.load_in_4bit and not ctx.env.has_cuda:
        yield Problem("loader.load_in_4bit", True, "4-bit loading (bitsandbytes) needs a CUDA GPU",
                      "drop loader.load_in_4bit on this machine, or run on a GPU")


def check_one_process(ctx):
    from r1exp.machine.processes import planned_world_size

    world = planned_world_size(ctx.cfg)
    if world > 1:
        yield Problem("distributed.num_processes", world,
                      "Unsloth trains in one process on one GPU (its open-source release has no multi-GPU training)",
                      "use loader=peft for several processes, or distributed=none with loader=unsloth")


def _fast(cfg) -> bool:
    return bool(get(cfg, "loader.fast_inference", False))


UNSLOTH_LOGIT_BYTES = 4   # recompute_logits=false: the loss's logits of the whole micro-batch, float32
HIDDEN_BYTES = 2          # recompute_logits=true: the loss keeps its input, the hidden states (bfloat16), per token
UNSLOTH_ACT_FACTOR = 1.0  # one layer's activations, fitted on measured H200 peaks (0.5B, 1.5B, 7B)
UNSLOTH_RECOMPUTE_ACT_FACTOR = 1.6  # recompute_logits: the backward holds more than one layer's activations (its
                                    # peak moved from the logits to the layers); fitted on measured H200 peaks with
                                    # recompute_logits (0.5B, 1.5B, 7B: -6% to -9% at 1.0, within ±3% at 1.6)


# Unsloth's standby picks vLLM's fraction by the GPU's size (unsloth_zoo.vllm_utils.load_vllm, 2026.10: a tenth of
# the GPU in GiB -> fraction, then x0.95 for vLLM >= 0.11)
STANDBY_FRACTIONS = ((4.0, 0.925), (2.5, 0.9), (2.0, 0.825), (1.4, 0.8), (1.0, 0.775), (0.0, 0.75))


def standby_fraction(device_gb: float) -> float:
    return next(f for tenth, f in STANDBY_FRACTIONS if device_gb * 0.1 >= tenth) * 0.95


class UnslothLoader(Loader):
    fast_inference: bool = False
    max_lora_rank: int = Field(16, ge=1)
    standby: bool = False
    gpu_memory_utilization: float | Literal["auto"] | None = None
    compile: bool = False
    recompute_logits: bool = True
    trl_trainers: Literal["grpo", "all"] = "grpo"

    packages: ClassVar[tuple] = ("unsloth", "unsloth_zoo")
    needs_gpu: ClassVar[bool] = True
    on_policy_patch: ClassVar[str | None] = "unsloth_on_policy"
    not_reproducible: ClassVar[str | None] = ("Unsloth's own kernels and vLLM engine were not verified deterministic "
                                              "(r1exp's deterministic mode is measured with loader=peft)")
    on_policy_trainer: ClassVar[str | None] = "r1exp.patches.unsloth_on_policy"

    def patches(self, device: str) -> tuple:
        own = (("unsloth_logits",) * self.recompute_logits + ("unsloth_imports",) * (self.trl_trainers == "grpo")
               + ("torch_dynamo",) * (not self.compile) + ("trl_vllm_llm",) * self.fast_inference)
        return super().patches(device) + own
    own_trainer_fields: ClassVar[dict] = {   # where UnslothGRPOConfig's value stands (r1exp/grpo/args.py)
        "bf16": "Unsloth casts the model and autocasts its loss itself (its GRPOConfig passes bf16=False)",
        "gradient_checkpointing_kwargs": "Unsloth's own gradient checkpointing (use_reentrant=True)",
        "torch_empty_cache_steps": "Unsloth empties the CUDA cache every 250 steps",
        "router_aux_loss_coef": "Unsloth's GRPO loss has no MoE router auxiliary loss (0; anything else fails)",
    }
    rules: ClassVar[tuple] = (
        Rule("unsloth.fast_inference", ("loader.fast_inference", "engine.in_process"), check_fast_inference,
             doc="loader=unsloth with the in-process engine needs fast_inference=true (the vllm_engine error / "
                 "a 2nd engine)"),
        Rule("unsloth.server", ("engine.name",), check_no_server, doc="Unsloth cannot generate through a vLLM server"),
        Rule("unsloth.max_lora_rank", ("loader.max_lora_rank", "model.lora.r"), check_lora_rank,
             doc="Unsloth's engine is built for LoRA ranks up to max_lora_rank"),
        Rule("unsloth.gpu", ("loader.name",), check_needs_gpu, scope="machine",
             doc="Unsloth cannot be imported without a CUDA GPU"),
        Rule("unsloth.installed", ("loader.name",), check_installed, scope="machine", doc="loader=unsloth needs unsloth"),
        Rule("loader.4bit", ("loader.load_in_4bit",), check_four_bit_gpu, scope="machine",
             doc="4-bit loading needs CUDA"),
        Rule("unsloth.one_process", ("distributed.num_processes",), check_one_process,
             doc="Unsloth trains in a single process"),
    )
    built_rules: ClassVar[tuple] = (
        BuiltRule("check.unsloth.engine", "loader.fast_inference",
                  lambda cfg, facts: _fast(cfg) and facts.model_engine is None,
                  "the Unsloth model has no vllm_engine after loading with fast_inference=true",
                  "check that vLLM is installed for Unsloth (docs/gpu.md), or use engine=hf"),
        BuiltRule("check.unsloth.second_engine", "loader.fast_inference",
                  lambda cfg, facts: _fast(cfg) and facts.model_engine is not None
                  and facts.trainer_engine is not None and facts.trainer_engine is not facts.model_engine,
                  "TRL started a second vLLM engine next to Unsloth's model.vllm_engine: two copies of the weights",
                  "import Unsloth before TRL (r1exp's unsloth loader does), and use the TRL version Unsloth supports"),
        BuiltRule("check.unsloth.unused_engine", "loader.fast_inference",
                  lambda cfg, facts: facts.model_engine is not None and not facts.uses_vllm,
                  "the model carries a vLLM engine (Unsloth fast_inference) that the chosen engine never uses, and "
                  "it holds its memory", "drop the loader.fast_inference override, or use engine=vllm"),
    )

    def prepare_imports(self, cfg: DictConfig) -> None:
        if self.standby:
            os.environ["UNSLOTH_VLLM_STANDBY"] = "1"
        if not self.compile:
            os.environ["UNSLOTH_COMPILE_DISABLE"] = "1"
        from r1exp.patches.unsloth_imports import import_unsloth

        import_unsloth(self.trl_trainers)  # patches transformers/TRL/PEFT on import
        self.install_loss_logits()

    def install_loss_logits(self) -> None:
        """recompute_logits: Unsloth's loss recomputes its logits in the backward (before the model is loaded, so a
        zoo that computes them differently stops the run in seconds)."""
        from r1exp.errors import ConfigError
        from r1exp.patches import unsloth_logits

        try:
            unsloth_logits.install(self.recompute_logits)
        except unsloth_logits.NotApplicable as e:
            raise ConfigError([Problem(
                "loader.recompute_logits", True,
                f"the installed unsloth_zoo computes its GRPO loss's log-probs differently from the version r1exp "
                f"recomputes them for ({e})", "set loader.recompute_logits=false, or install the unsloth_zoo of "
                f"the GPU stack ({INSTALL['gpu']})")]) from None

    def shares_engine_weights(self, engine_in_process: bool) -> bool:
        return self.fast_inference and engine_in_process

    def plan_notes(self, cfg: DictConfig, plan) -> list[str]:
        if not (self.standby and self.fast_inference and plan.device_gb and plan.gpu_memory_utilization):
            return []
        return [f"standby: Unsloth would give vLLM {standby_fraction(plan.device_gb):.3f} of this GPU; r1exp hands "
                f"it the planned {plan.gpu_memory_utilization} instead (r1exp's wins)"]

    def utilization_is_ceiling(self, engine_in_process: bool) -> bool:
        """Unsloth hands vLLM less than the fraction it is given (the fraction of the memory free at load, lowered
        for training's activations, retried 0.85x lower on an out-of-memory start: unsloth_zoo.vllm_utils
        load_vllm / approximate_vllm_memory_usage); its notebooks ask 0.9 and log 0.5-0.7. r1exp plans the fraction
        that fits beside training, at most the one asked, and hands it to the engine itself."""
        return self.fast_inference and engine_in_process

    def adopt(self, cfg: DictConfig) -> list:
        """Unsloth's GRPOConfig raises per_device_train_batch_size to num_generations when per_device_train_batch_size
        x gradient_accumulation_steps x world size is not a multiple of num_generations (and neither
        steps_per_generation nor generation_batch_size is set); its notebooks print "We will change the batch
        size of 1 to the `num_generations` of 6". r1exp makes the same change before planning and says so."""
        from omegaconf import open_dict

        from r1exp.plan.memory import trainer_value
        from r1exp.scale.distributed import planned_world_size

        values = {k: trainer_value(cfg, k) for k in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                                       "num_generations", "steps_per_generation",
                                                       "generation_batch_size")}
        micro, accumulation, gens = (values["per_device_train_batch_size"], values["gradient_accumulation_steps"],
                                     values["num_generations"])
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (micro, accumulation, gens)):
            return []   # the schema's rows report it
        if values["steps_per_generation"] is not None or values["generation_batch_size"] is not None:
            return []
        if (accumulation * planned_world_size(cfg) * micro) % gens == 0:
            return []
        with open_dict(cfg.trainer):
            cfg.trainer.per_device_train_batch_size = gens
        return [Problem("trainer.per_device_train_batch_size", micro,
                        f"Unsloth changes it to num_generations={gens} (per_device_train_batch_size x "
                        f"gradient_accumulation_steps x processes = {micro} x {accumulation} x "
                        f"{planned_world_size(cfg)} is not a multiple of {gens}); r1exp plans and passes {gens}",
                        f"set trainer.per_device_train_batch_size={gens} (or a multiple) to say so yourself",
                        rule="unsloth.batch", severity="warning")]

    def sleeps_own_engine(self) -> bool:
        """Standby: Unsloth sleeps its engine while the trainer computes gradients, releasing the KV cache and keeping
        the weights the trainer shares (H200, 7B 64 x 256: peak 24.5 vs 25.8 GiB awake, the 1.3 GiB KV cache)."""
        return self.standby

    def adjust_terms(self, cfg: DictConfig, terms: dict, micro: int) -> None:
        """Unsloth's GRPO loop, measured per phase on the H200 (docs/benchmarks.md): the peak is in the
        loss's forward and backward, which holds the micro-batch's logits in float32 at once — every position, all
        of the vocabulary (9.3-11.5 GiB at a 151,936 vocabulary and 17,600-20,300 tokens, whatever the model size;
        capping the chunks of its no-grad log-prob pass changed nothing). With recompute_logits the loss keeps the
        hidden states instead and one block of logits at a time. Unsloth's gradient checkpointing offloads each
        layer's input to CPU memory, so only the layer being redone is on the GPU."""
        from r1exp.plan.memory import GiB, layer_activations_gb, sequence_tokens, trainer_value
        from r1exp.patches.unsloth_logits import BLOCK_BYTES_PER_LOGIT, block_rows

        tokens = micro * sequence_tokens(cfg)
        vocab = int(cfg.model.arch.vocab)
        if self.recompute_logits:
            block = min(tokens, block_rows(vocab)) * vocab * BLOCK_BYTES_PER_LOGIT
            terms["logprob_head"] = (tokens * int(cfg.model.arch.hidden) * HIDDEN_BYTES + block) / GiB
        else:
            terms["logprob_head"] = tokens * vocab * UNSLOTH_LOGIT_BYTES / GiB
        layer = layer_activations_gb(cfg, tokens,
                                     UNSLOTH_RECOMPUTE_ACT_FACTOR if self.recompute_logits else UNSLOTH_ACT_FACTOR)
        checkpointed = bool(trainer_value(cfg, "gradient_checkpointing", True))
        terms["activations"] = layer if checkpointed else layer * int(cfg.model.arch.layers)

    @classmethod
    def alternative_knob(cls, cfg: DictConfig, current, engine, option: str, option_cfg):
        from r1exp.plan.knobs import Knob

        if type(current) is cls or not engine.in_process:
            return None
        return Knob(f"loader={option} (engine and trainer share one copy of the weights)", {"loader": option_cfg})

    def describe(self, cfg: DictConfig) -> str:
        return (f"{self.name} fast_inference={self.fast_inference} load_in_4bit={self.load_in_4bit} "
                f"standby={self.standby} recompute_logits={self.recompute_logits} trl_trainers={self.trl_trainers}"
                + self.reuse_note())

    def load(self, cfg: DictConfig, source: str, plan, engine_context) -> Loaded:
        self.prepare_imports(cfg)
        import torch
        from unsloth import FastLanguageModel

        lora = cfg.model.lora
        longest = cfg.model.max_seq_length or plan.max_model_len   # null: as long as the run's sequences
        kwargs = dict(model_name=source, max_seq_length=int(longest), load_in_4bit=self.load_in_4bit,
                      fast_inference=self.fast_inference, max_lora_rank=self.max_lora_rank,
                      dtype=getattr(torch, str(cfg.model.dtype)))
        if not self.fast_inference:
            engine_context = contextlib.nullcontext()
        else:
            # engine_context: the engine's own settings (graphs, compile, batch limits, one step's sequences at
            # once) replace Unsloth's choices; the post-build check reads them back
            util = plan.gpu_memory_utilization   # the planned fraction: an explicit one, or lower where it is a
            if util is not None:                 # ceiling (utilization_is_ceiling); without a value Unsloth's own
                kwargs["gpu_memory_utilization"] = float(util)
            # Unsloth sizes its engine's max_model_len from max_seq_length (a max_model_len argument is ignored:
            # the 7B run got 2048 instead of the planned 320, docs/benchmarks.md)
            kwargs["max_seq_length"] = int(plan.max_model_len)
        with engine_context:
            model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
        model = FastLanguageModel.get_peft_model(
            model, r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
            target_modules=lora_target_modules(cfg, names_only=True),
            use_gradient_checkpointing="unsloth" if cfg.trainer.get("gradient_checkpointing") else False,
            random_state=int(cfg.seed),
        )
        if not self.compile:
            torch_dynamo.disable()  # after vLLM compiled its engine (r1exp.patches.torch_dynamo)
        tokenizer = self.finish_tokenizer(cfg, tokenizer)
        return Loaded(model=model, tokenizer=tokenizer, peft_config=None, path=source)
