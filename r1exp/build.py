"""Building a run from its config: loader (model, tokenizer), data, rewards, GRPOConfig, GRPOTrainer.

Heavy imports live here and below, never in r1exp.config. The loader decides import order (Unsloth before TRL).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

# Keys of GRPOConfig that r1exp derives from other groups; setting them under trainer is an error (see rules).
DERIVED_TRAINER_KEYS = ("output_dir", "run_name", "report_to", "reward_weights", "use_vllm", "vllm_mode")


@dataclass
class Built:
    trainer: object
    loaded: object      # loaders.Loaded
    dataset: object
    reward_funcs: list
    args: object        # trl.GRPOConfig


def grpo_config(cfg, run_dir: Path, plan, report_to: str, reward_weights: list[float]):
    from trl import GRPOConfig

    from r1exp.engines import grpo_engine_args
    from r1exp.tracking import grpo_logging_args

    trainer_keys = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs = {**grpo_logging_args(cfg, report_to), **trainer_keys}  # completions table for W&B; trainer.* wins
    kwargs.update(grpo_engine_args(cfg, plan, _device(cfg)))
    kwargs.update(
        output_dir=str(run_dir / "trainer"), run_name=Path(run_dir).name, report_to=report_to,
        reward_weights=reward_weights, use_cpu=_device(cfg) == "cpu",
    )
    return GRPOConfig(**kwargs)


def build(cfg, plan, run_dir: Path, report_to: str, callbacks: list, log=print) -> Built:
    from r1exp import data, loaders, rewards

    if cfg.engine.name == "vllm" and _device(cfg) == "cpu":
        from r1exp.engines.vllm_cpu import prepare_threads

        prepare_threads()  # before torch is imported: OpenMP's wait policy for vLLM on a shared CPU
    loaded = loaders.load(cfg, log=log)  # first: Unsloth must be imported before TRL
    from trl import GRPOTrainer

    dataset = data.build_dataset(cfg.data)
    funcs, weights = rewards.build_rewards(cfg.reward)
    args = grpo_config(cfg, run_dir, plan, report_to, weights)
    from r1exp.engines import engine_settings
    from r1exp.engines.colocate import engine_build

    with engine_build(engine_settings(cfg, plan, _device(cfg)), log=log):  # CPU patch, LLM kwargs TRL lacks
        trainer = GRPOTrainer(
            model=loaded.model, reward_funcs=funcs, args=args, train_dataset=dataset,
            processing_class=loaded.tokenizer, peft_config=loaded.peft_config, callbacks=callbacks,
        )
    return Built(trainer=trainer, loaded=loaded, dataset=dataset, reward_funcs=funcs, args=args)


def _device(cfg) -> str:
    from r1exp.config.environment import detect

    if cfg.hardware.device != "auto":
        return str(cfg.hardware.device)
    return "cuda" if detect().has_cuda else "cpu"
