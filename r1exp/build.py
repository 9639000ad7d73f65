"""Building a run from its config: loader (model, tokenizer), data, rewards, GRPOConfig, GRPOTrainer.

Heavy imports live here and below, never in the pre-flight. It receives the components the pre-flight resolved
(r1exp.components.Resolved) and rebuilds none of them. The chosen loader decides import order (Unsloth before
TRL); the chosen engine says what GRPOConfig gets and what must hold while the trainer is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf


@dataclass
class Built:
    trainer: object
    loaded: object      # loaders.base.Loaded
    dataset: object
    reward_funcs: list
    args: object        # trl.GRPOConfig
    engine: object      # the chosen engine (r1exp.engines.base.Engine)
    loader: object      # the chosen loader (r1exp.loaders.base.Loader)
    args_report: dict   # trainer fields pinned to TRL's values / kept by the loader (r1exp/grpo/args.py)


def grpo_config(run, run_dir: Path, report_to: str, reward_weights: list[float]):
    """(GRPOConfig, report): the trainer's arguments as the config says them, with TRL's defaults for the keys it
    leaves out even where the loader's GRPOConfig class has other defaults (r1exp/grpo/args.py)."""
    from trl import GRPOConfig

    from r1exp.grpo import args as trainer_args
    from r1exp.observe.tracking import grpo_logging_args

    cfg = run.cfg
    trainer_keys = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs = {**grpo_logging_args(cfg, report_to), **trainer_keys}  # completions table for W&B; trainer.* wins
    kwargs.update(run.engine.grpo_args(cfg, run.plan, run.device))
    if cfg.get("reproducible"):
        kwargs["full_determinism"] = True  # transformers: deterministic torch algorithms, cuDNN, seeded
    kwargs.update(
        output_dir=str(run_dir / "trainer"), run_name=Path(run_dir).name, report_to=report_to,
        reward_weights=reward_weights, use_cpu=run.device == "cpu",
    )
    loader = run.loader
    return trainer_args.build(GRPOConfig, kwargs, loader.own_trainer_fields, owner=f"loader={loader.name}")


def deterministic_mode(engine) -> None:
    """reproducible=true, before torch and vLLM are imported: cuBLAS's deterministic workspace (it must be set before
    the first cuBLAS call; transformers' full_determinism sets it too late for that) and the engine's own mode."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    os.environ.update(engine.deterministic_env)


def prepare_imports(run) -> None:
    """What must happen before torch, transformers, PEFT or TRL are first imported: the deterministic environment,
    the engine's process settings (OpenMP's wait policy on CPU), the loader's imports (Unsloth patches transformers,
    PEFT and TRL as it is imported, and warns that its optimizations may not all apply when they came first). The
    run calls it before anything else of the build, callbacks included; again here it changes nothing."""
    if run.cfg.get("reproducible"):
        deterministic_mode(run.engine)
    run.engine.before_imports(run.cfg, run.device)
    run.loader.prepare_imports(run.cfg)


def tool_arguments(cfg, tools) -> dict:
    """GRPOTrainer's `tools` and `environment_factory`, only when the config selects some: a trainer of a TRL
    without them is then built as before."""
    out = {}
    if cfg.get("tools"):
        out["tools"] = tools.build_tools(cfg.tools)
    factory = tools.build_environment(cfg.get("environment"))
    if factory is not None:
        out["environment_factory"] = factory
    return out


def build(run, run_dir: Path, report_to: str, callbacks: list, log=print) -> Built:
    """The trainer of a run whose components the pre-flight resolved (r1exp.components.Resolved), as open-r1's
    grpo.py does it: model source, rewards, GRPOConfig, model, data, trainer."""
    from r1exp import data, rewards, tools
    from r1exp.evaluation import heldout
    from r1exp.models.source import model_source
    from r1exp.tools.rules import uses_tools
    from r1exp.tools.turns import log_turns

    cfg, engine, loader, plan, device = run.cfg, run.engine, run.loader, run.plan, run.device
    prepare_imports(run)
    # a locally built model is built before GRPOConfig starts torch.distributed (in which transformers writes weights
    # on rank 0 only); the arguments are checked before the model loads: seconds, not minutes
    source = model_source(cfg, log=log)
    funcs, weights = rewards.build_rewards(cfg.reward)
    if uses_tools(cfg) and funcs:
        funcs[0].observers.append(log_turns)   # tools/turns next to TRL's tools/call_frequency
    args, args_report = grpo_config(run, run_dir, report_to, weights)
    loaded = loader.load(cfg, source, plan, engine.loader_engine_context(cfg, plan, device))
    trainer_class = loader.trainer_class()
    # a generated task evaluated on its held-out questions trains without them
    dataset = data.build_dataset(cfg.data, keep=heldout.training_filter(cfg))
    held_out = data.build_eval_dataset(cfg.data)   # data.eval_split: TRL's own evaluation (rewards on held-out prompts)
    with engine.build_context(cfg, plan, device, log=log):
        trainer = trainer_class(
            model=loaded.model, reward_funcs=funcs, args=args, train_dataset=dataset, eval_dataset=held_out,
            processing_class=loaded.tokenizer, peft_config=loaded.peft_config, callbacks=callbacks,
            **tool_arguments(cfg, tools),
        )
    return Built(trainer=trainer, loaded=loaded, dataset=dataset, reward_funcs=funcs, args=args, engine=engine,
                 loader=loader, args_report=args_report)
