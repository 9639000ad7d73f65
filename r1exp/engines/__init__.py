"""Inference engines, expressed as the TRL GRPOConfig arguments that select and size them."""

from __future__ import annotations


def grpo_engine_args(cfg, gpu_memory_utilization: float | None = None) -> dict:
    """GRPOConfig keyword arguments for cfg.engine (use_vllm, vllm_mode and the vllm_* sizing keys)."""
    engine = cfg.engine
    if engine.name == "hf":
        return {"use_vllm": False}
    args = {"use_vllm": True, "vllm_tensor_parallel_size": int(engine.get("tensor_parallel_size", 1))}
    if engine.get("max_model_len"):
        args["vllm_max_model_length"] = int(engine.max_model_len)
    if engine.name == "vllm":
        args["vllm_mode"] = "colocate"
        args["vllm_enable_sleep_mode"] = bool(engine.get("sleep_mode", False))
        if gpu_memory_utilization is not None:
            args["vllm_gpu_memory_utilization"] = float(gpu_memory_utilization)
    elif engine.name == "vllm_server":
        args.update(vllm_mode="server", vllm_server_host=str(engine.host), vllm_server_port=int(engine.port),
                    vllm_server_timeout=float(engine.get("timeout_s", 240)))
    return args
