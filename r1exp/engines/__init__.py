"""Inference engines: one class per engine (r1exp.engines.base.Engine), chosen by `_target_` in conf/engine/*.yaml.

hf (transformers `generate`), transformers_cb (transformers' continuous batching), vllm (in-process, TRL
colocate), vllm_server (a separate vLLM server: `vllm serve`, or `trl vllm-serve` for an older TRL); `vllm_common` is what the two vLLM engines share and
`server` runs a server process. What an engine replaces upstream lives in r1exp/patches/ (`Engine.patches`); the
post-build check that reads what was built is r1exp.checks.built.
"""
