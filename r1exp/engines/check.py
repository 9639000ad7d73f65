"""The post-build check: the engine the config asked for exists and is the one that will be used."""

from __future__ import annotations

from r1exp.errors import Problem


def check_engine(cfg, built) -> list[Problem]:
    trainer = built.trainer
    uses_vllm = bool(getattr(trainer, "use_vllm", False))
    engine = cfg.engine.name
    problems = []
    if engine == "hf" and uses_vllm:
        problems.append(Problem("engine.name", engine, "the trainer was built with use_vllm=True although engine=hf",
                                "report this: r1exp derived the wrong GRPOConfig", rule="check.engine.hf"))
    if engine in ("vllm", "vllm_server") and not uses_vllm:
        problems.append(Problem("engine.name", engine, "the trainer will generate with transformers, not vLLM",
                                "check that vLLM is importable here (python -c 'import vllm')", rule="check.engine.vllm"))
    if cfg.loader.name == "unsloth" and cfg.loader.get("fast_inference"):
        model = built.loaded.model
        if getattr(model, "vllm_engine", None) is None:
            problems.append(Problem("loader.fast_inference", True,
                                    "the Unsloth model has no vllm_engine after loading with fast_inference=true",
                                    "check that vLLM is installed for Unsloth, or use engine=hf",
                                    rule="check.unsloth.engine"))
    return problems
