"""engine=vllm_server: TRL's server mode against a separate `trl vllm-serve` process on GPUs of its own, launched
and stopped by r1exp (engine.launch=true, on engine.gpus) or attached to (engine.host:engine.port). Weights reach
the server over NCCL, which needs CUDA: on CPU the server would keep generating with the initial weights.
The process handling (start, health, stop) is r1exp.engines.server."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import ClassVar, Literal

from omegaconf import DictConfig
from pydantic import Field

from r1exp.config.rule import Rule
from r1exp.config.rule import BuiltRule
from r1exp.engines.server import TRL_CLI, ServerSpec, running_server
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

    def serve_command(self, cfg: DictConfig, model_path: str, max_model_len: int | None = None) -> list[str]:
        """`trl vllm-serve` with the engine's settings (TRL's ScriptArguments field names)."""
        cmd = [sys.executable, "-c", TRL_CLI, "vllm-serve", "--model", str(model_path), "--host", self.host,
               "--port", str(self.port), "--tensor_parallel_size", str(self.tensor_parallel_size),
               "--dtype", str(cfg.model.dtype)]
        if self.gpu_memory_utilization not in (None, "auto"):
            cmd += ["--gpu_memory_utilization", str(float(self.gpu_memory_utilization))]
        length = self.max_model_len or max_model_len
        if length:
            cmd += ["--max_model_len", str(int(length))]
        if self.eager("cuda"):
            cmd += ["--enforce_eager"]
        return cmd

    def server_spec(self, cfg: DictConfig, model_path: str | None = None) -> ServerSpec:
        spec = ServerSpec(host=self.host, port=self.port, timeout_s=self.timeout_s)
        if self.launch:
            from r1exp.plan.memory import max_model_len

            spec.command = self.serve_command(cfg, model_path, max_model_len(cfg))
            spec.env = {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in self.gpus)}
        return spec

    @contextlib.contextmanager
    def lifecycle(self, cfg: DictConfig, run_dir, log=print):
        """A healthy server around build and training: attached, or launched here and always stopped."""
        model_path = None
        if self.launch:
            from r1exp.models.source import model_source

            model_path = model_source(cfg, log=log)
        with running_server(self.server_spec(cfg, model_path), Path(run_dir) / "vllm_server.log", log=log) as spec:
            yield spec
