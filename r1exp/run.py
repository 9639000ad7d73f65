"""One run, top to bottom: validate -> plan -> build -> check -> train -> save.

Called by Hydra for each job (r1exp.__main__ has already composed and validated every job before Hydra created
any folder). Returns the exit status: 0 ok, 2 a configuration problem found after building, 1 a runtime failure,
128 + signal when stopped by SIGTERM or Ctrl-C (a checkpoint is saved, see r1exp.records.resume). The run folder's run.json
always says which. It never raises: a sweep goes on after a failed job.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path

from omegaconf import OmegaConf

from r1exp.checks.validate import preflight
from r1exp.components import engine_of
from r1exp.errors import (
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    ConfigError,
    RunStopped,
    disk_full_reason,
    errors_of,
)
from r1exp.evaluation import heldout
from r1exp.evaluation.schedule import Evaluations
from r1exp.machine import kernel_cache, processes
from r1exp.machine.facts import detect, device_label
from r1exp.models.architecture import fill_arch
from r1exp.observe import console, summary, timing, tracking
from r1exp.observe.gpu_memory import PeakMemory
from r1exp.records import ending, secrets
from r1exp.records.manifest import Manifest
from r1exp.records.metrics import read_metrics
from r1exp.records.resume import GracefulStop, last_checkpoint, prepare_resume
from r1exp.scale import distributed


def run_dir_of_hydra() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def run(cfg, run_dir: Path | None = None) -> int:
    run_dir = Path(run_dir or run_dir_of_hydra())
    run_dir.mkdir(parents=True, exist_ok=True)
    console.route(run_dir)  # library output (vLLM, transformers, torch, warnings) to train.log; R1EXP_LIVE=verbose
    try:
        secrets.scrub_hydra_files(run_dir)  # Hydra saved the config before this function was called
    except OSError as e:
        return ending.not_started(run_dir, e)
    if distributed.needs_launch(cfg):  # distributed=ddp|fsdp|...: the ranks run this function under accelerate
        return distributed.launch(cfg, run_dir, engine_of(cfg))  # the ranks run the pre-flight themselves
    env = detect()
    fill_arch(cfg)  # model.arch from the model's config.json, before the config is recorded (the pre-flight reports)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    try:
        manifest = Manifest(run_dir, config_dict, seed=int(cfg.seed), device=device_label(cfg, env),
                            resume=bool(cfg.get("resume", False)))
    except OSError as e:  # a full or read-only disk: not even run.json could be written
        return ending.not_started(run_dir, e)
    startup = timing.Startup(on_change=lambda parts: manifest.update(startup=parts))  # run.json `startup`
    status, code = "failed", EXIT_RUNTIME
    disk_full = False
    servers = contextlib.ExitStack()  # engine=vllm_server: a launched server lives until the run ends
    stop = GracefulStop()  # SIGTERM / Ctrl-C: checkpoint at the end of the step, then stop
    stop.install()
    clock = summary.PhaseClock()  # wall time per phase, kept in run.json (`phases`)
    try:
        manifest.update(distributed=distributed.facts(cfg))
        checked = preflight(cfg, env, dry_run=False)  # resolves engine, loader and plan once, for all that follows
        if errors_of(checked.problems):
            raise ConfigError(errors_of(checked.problems))
        resolved = checked.run
        manifest.update(plan=resolved.plan.as_dict())
        _check_rewards(cfg)
        checkpoint = prepare_resume(cfg, run_dir, manifest)
        clock.enter("build")
        report_to = tracking.start_tracker(cfg, run_dir, config_dict, manifest.data)
        manifest.update(wandb_id=tracking.tracker_run_id())
        kernel_cache.use(cfg.hardware.get("kernel_cache"))  # before any GPU library starts, and a server launched
        if processes.is_main_process():  # one server for all ranks (TRL talks to it from rank 0)
            servers.enter_context(resolved.engine.lifecycle(cfg, run_dir))
        with startup.build():
            built = _build(resolved, run_dir, report_to)
        _check(resolved, built)
        manifest.update(old_logprobs=getattr(built.trainer, "old_logprobs", None),  # r1exp/patches/*_on_policy.py
                        trainer_args=built.args_report or None)                 # r1exp/grpo/args.py
        built.trainer.add_callback(stop.callback())
        if heldout.runs(cfg):   # eval=heldout with held-out prompts and a correctness reward: baseline, final
            evaluations = Evaluations(cfg, built.trainer, built.reward_funcs, run_dir,
                                      on_record=lambda block: manifest.update(eval=block))
            built.trainer.add_callback(evaluations.callback())
        stop.install()
        distributed.before_training()
        clock.enter("train")
        with PeakMemory() as gpu_memory:  # measured peak next to the plan's prediction (GPU only)
            built.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        manifest.update(gpu_memory=gpu_memory.summary())
        if stop.requested:
            raise KeyboardInterrupt
        clock.enter("save")
        metrics = _save(cfg, built, run_dir)
        status, code = "ok", EXIT_OK
        manifest.finish("ok", metrics, exit_code=code)
    except ConfigError as e:
        print(str(e))
        code = EXIT_USAGE
        ending.end(manifest, clock, "failed", error=str(e), exit_code=code)
    except RunStopped as e:   # a stop r1exp designed (a broken or too slow reward): its message, not a traceback
        print(f"r1exp: the run stopped: {e}", file=sys.stderr)
        ending.end(manifest, clock, "failed", tracking.summarize(read_metrics(run_dir)),
                   error=f"{type(e).__name__}: {e}", exit_code=code)
        summary.save_traceback(run_dir)   # error.txt keeps the traceback for whoever debugs the reward
    except KeyboardInterrupt:
        status, code = "interrupted", stop.exit_code
        saved = last_checkpoint(run_dir)
        ending.end(manifest, clock, "interrupted", tracking.summarize(read_metrics(run_dir)), exit_code=code,
                   checkpoint=str(saved) if saved else None)
    except Exception as e:  # a runtime failure: keep the traceback for the person debugging it
        reason = disk_full_reason(e, ending.being_written(run_dir, clock.current))
        if reason:   # a condition r1exp names: one line, the traceback in error.txt
            print(f"r1exp: the run failed during {clock.current}: {reason}", file=sys.stderr)
            disk_full = True
            ending.discard_partial(run_dir)
        else:
            traceback.print_exc()
        ending.end(manifest, clock, "failed", tracking.summarize(read_metrics(run_dir)),
                   error=reason or f"{type(e).__name__}: {e}", exit_code=code)   # run.json first: the record matters most
        summary.save_traceback(run_dir)  # error.txt, named by the closing summary (skipped when it cannot be written)
    finally:
        servers.close()
        stop.restore()
        ending.record(manifest, phases=clock.stop(), wandb_url=summary.wandb_url())
        tracking.finish_tracker(cfg, manifest.data.get("metrics", {}), status, run_dir)
        if disk_full:
            ending.discard_partial(run_dir)   # again: W&B wrote its last records as it closed
        manifest.close()
        if processes.is_main_process():
            summary.print_run_summary(run_dir, manifest.data)
    return distributed.rank_exit_status(code)


def _check_rewards(cfg) -> None:
    """Before loading the model: every reward tells a good completion from a bad one on the data (cheap)."""
    checks = cfg.get("checks") or {}
    if checks.get("reward_sanity", True):
        from r1exp.rewards.sanity import check_rewards

        problems = check_rewards(cfg).problems
        if problems:
            raise ConfigError(problems)


def _build(resolved, run_dir, report_to):
    _own_rendezvous_port()
    from r1exp.build import build, prepare_imports
    from r1exp.observe import live
    from r1exp.rewards.monitor import reward_monitor

    prepare_imports(resolved)  # first: the callbacks below import transformers (and with it torch and PEFT)

    checks = resolved.cfg.get("checks") or {}
    monitor = reward_monitor(run_dir, checks.get("max_reward_failure_rate"), checks.get("reward_time_budget_s"))
    built = build(resolved, run_dir, report_to, callbacks=[tracking.metrics_callback(run_dir)])
    tracking.prepare_completions_table(built.trainer)   # no secret in the completions tables; tool turns W&B takes
    timing.attach(built.trainer)  # time/* phases of every step in the logs (metrics.jsonl, W&B)
    monitor.attach(built.trainer, built.reward_funcs)  # first callback: reward failures and seconds in every log
    live.attach(built.trainer, run_dir)  # the console: a compact live view instead of TRL's dictionaries
    return built


def _check(resolved, built) -> None:
    """After the build and before the first step: the engine the config asked for is the one in use, with the
    settings the plan computed."""
    from r1exp.checks.built import check_engine

    problems = check_engine(resolved, built)
    if problems:
        raise ConfigError(problems)


def _save(cfg, built, run_dir: Path) -> dict:
    built.trainer.save_model(str(run_dir / "adapter"))
    metrics = tracking.summarize(read_metrics(run_dir))
    if processes.is_main_process():
        tracking.plot_reward_curve(run_dir, title=f"{cfg.name}: {cfg.model.name_or_path} / {cfg.engine.name}")
    return metrics


def _own_rendezvous_port() -> None:
    """A single-process run rendezvouses on a free port: accelerate otherwise pins MASTER_PORT=29500 on CPU, so two
    runs with an in-process vLLM engine on one machine collide (EADDRINUSE) — two SLURM jobs of a sweep on one node
    did, with 29500 in their environment. The ranks of a launched multi-process run keep their launcher's port."""
    import os
    import socket

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])

