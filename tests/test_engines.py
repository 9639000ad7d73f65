"""Engines and loaders as components: one class per YAML, chosen by `_target_`, typed by its class.

- A component's fields are typed and ranged by its class: a wrong value is an exit-2 block naming the key.
- A `_target_` that is missing, not importable or not a component class is an exit-2 block.
- A user's own engine (a subclass given by `_target_`, defined outside r1exp) is validated and planned like a
  shipped one.
- The fourth engine, transformers' continuous batching, trains the tiny model end to end on CPU.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from r1exp import __main__ as entry
from r1exp.components import engine_of, loader_of
from r1exp.config.compose import compose
from r1exp.components import plan_for
from r1exp.checks.validate import validate
from r1exp.engines.hf import HFGenerate
from r1exp.errors import errors_of
from r1exp.machine.facts import detect


class SlowGenerate(HFGenerate):
    """A user's engine: generate with transformers, with a field of its own."""

    beams: int = 1


@pytest.fixture
def refuse_to_run(monkeypatch):
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: 99)


BAD_COMPONENTS = [  # (command line, rule, key named)
    ("engine=vllm_server engine.port=abc dry_run=true", "schema.type", "engine.port"),
    ("engine=vllm engine.tensor_parallel_size=0 dry_run=true", "range", "engine.tensor_parallel_size"),
    ("engine=vllm +engine.max_num_seq=4 dry_run=true", "schema.key", "engine.max_num_seq"),
    ("engine=vllm engine.in_process=false dry_run=true", "schema.type", "engine.in_process"),
    ("loader=unsloth loader.max_lora_rank=0 dry_run=true", "range", "loader.max_lora_rank"),
    ("engine._target_=no.such.Engine dry_run=true", "component.target", "engine._target_"),
    ("engine._target_=r1exp.plan.memory.MemoryPlan dry_run=true", "component.target", "engine._target_"),
    ("~engine._target_ dry_run=true", "component.target", "engine._target_"),
]


@pytest.mark.parametrize("args,rule,key", BAD_COMPONENTS, ids=[b[0] for b in BAD_COMPONENTS])
def test_a_wrong_component_value_or_target_stops_with_the_key(args, rule, key, capsys, tmp_path, refuse_to_run):
    code = entry.main(["logger=none", f"hydra.run.dir={tmp_path / 'run'}", *args.split()])
    text = "".join(capsys.readouterr())
    assert code == 2, text
    assert f"error [{rule}]: {key} = " in text, text
    assert "Traceback" not in text and "[internal]" not in text


def test_a_users_own_engine_is_validated_and_planned_like_a_shipped_one():
    cfg = compose(["engine=hf", f"engine._target_={__name__}.SlowGenerate", "+engine.beams=4"])
    engine = engine_of(cfg)
    assert isinstance(engine, SlowGenerate) and engine.beams == 4
    assert errors_of(validate(cfg, detect(), dry_run=True)) == []
    assert "generation_kv_cache" in plan_for(cfg, detect()).terms


def test_every_shipped_component_builds_from_its_yaml():
    for engine in ("hf", "vllm", "vllm_server", "transformers_cb"):
        assert engine_of(compose([f"engine={engine}"])).name == engine
    for loader in ("peft", "unsloth"):
        assert loader_of(compose([f"loader={loader}"])).name == loader


def test_continuous_batching_sizes_its_cache_from_the_plan():
    cfg = compose(["engine=transformers_cb"])
    engine, plan = engine_of(cfg), plan_for(cfg, detect())
    cache = engine.grpo_args(cfg, plan, "cpu")["transformers_continuous_batching_config"]
    assert cache["num_blocks"] * cache["block_size"] >= plan.generation_batch * plan.max_model_len


def test_continuous_batching_trains_the_tiny_model_end_to_end_on_cpu(tmp_path):
    result = run_cli(["engine=transformers_cb", "+trainer.bf16=false", "trainer.max_steps=2", "logger=none",
                      "trainer.per_device_train_batch_size=8", "trainer.num_generations=4"], tmp_path / "run")
    assert result.code == 0, result.output[-3000:]
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["status"] == "ok" and manifest["metrics"]["steps_logged"] == 2
    assert manifest["config"]["engine"]["name"] == "transformers_cb"


def test_continuous_batching_rows():
    from r1exp.machine.facts import Environment

    old = Environment(versions={**detect().versions, "transformers": "5.2.0"}, gpus=())
    found = {p.rule: p for p in validate(compose(["engine=transformers_cb"]), old)}
    assert found["engine.transformers_version"].severity == "error" and "5.8" in found["engine.transformers_version"].why
    assert found["engine.cb_dtype"].severity == "warning" and "bf16=false" in found["engine.cb_dtype"].fix
    clean = validate(compose(["engine=transformers_cb", "+trainer.bf16=false"]), detect())
    assert not {"engine.transformers_version", "engine.cb_dtype"} & {p.rule for p in clean}
