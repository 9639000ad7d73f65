"""Public recipes as a specification of the checker (tests/recipes/corpus.yaml: source repository, path, commit and the
GPU each ran on; tests/recipes/translate.py: the command line a user coming from that project types).

A recipe that ran in its own project passes the dry run planned for the GPU it ran on: a refusal would be a false
alarm. A failure reported in an anchor's issue tracker (the link is in the corpus) stops the dry run with exit 2 and
names the key that caused it. Where today's libraries fixed the failure itself, the recipe passes and the reason is
written below; where the report leaves the deciding setting out, both readings are asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

import r1exp.__main__ as entry
from r1exp.models import architecture

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "recipes"))
from translate import overrides, put_configs_in_cache  # noqa: E402

CORPUS = yaml.safe_load((ROOT / "tests" / "recipes" / "corpus.yaml").read_text())
BY_ID = {e["id"]: e for e in CORPUS}
RAN = [e["id"] for e in CORPUS if e["kind"] == "ran"]

# known failure -> the key the refusal must name (today's stack: TRL 1.16, vLLM 0.26-0.31)
REFUSED = {
    "fail/open-r1-572-unsloth-no-fast-inference": "loader.fast_inference",
    "fail/vllm-2652-tp8-vs-52-heads": "engine.tensor_parallel_size",
    "fail/open-r1-174-max-model-len-over-positions": "engine.max_model_len",
    "fail/trl-3180-server-max-model-len-6000": "engine.max_model_len",
    "fail/trl-3566-eval-batch-1x1": "trainer.per_device_eval_batch_size",
    # The train batch of 7 (3) processes x 1 now holds whole groups of 8: TRL >= 0.18 generates for
    # gradient_accumulation_steps (16) micro-batches at once. The recipe's eval batch, 4 x 7 (4 x 3), still does not.
    "fail/open-r1-217-batch-7x1-vs-8": "trainer.per_device_eval_batch_size",
    "fail/open-r1-236-batch-3x1-vs-8-l20": "trainer.per_device_eval_batch_size",
}
# known failure -> (why it runs with today's libraries, the keys its old failure was about: none is refused now)
FIXED_UPSTREAM = {
    "fail/trl-2796-fsdp-on-trl-0.14": ("GRPOTrainer supports FSDP since TRL 0.18 (huggingface/trl#3260)",
                                       ("distributed.name", "distributed.num_processes")),
    # the report states neither the GPU nor the adapter: what fails today on an 80 GB card is the memory of a full
    # fine-tune of 8B beside its engine, not the batched tokens
    "fail/trl-3788-max-num-batched-tokens": ("vLLM's V1 engine prefills in chunks: max_num_batched_tokens below "
                                             "max_model_len no longer refuses a sequence (TRL 1.16, vLLM >= 0.26)",
                                             ("engine.max_num_batched_tokens", "engine.max_model_len")),
}
# known failure -> (an override the report leaves open, the key named with it) and the other reading passes
UNDECIDED = {
    # the GPU is not stated ("AWS EC2"): at 0.3 of a 22 GiB A10G (EC2 g5) vLLM cannot start with a 7B model and a
    # 10,250-token sequence; at 0.3 of an 80 GB card it can, and r1exp hands Unsloth's engine the planned length
    "fail/unsloth-2215-gmu-0.3-max-len-256": ("hardware.gpu_memory_gb=22.0", "engine.gpu_memory_utilization"),
    # the dtype is not shown: a 7.6B model trained in full on one 96 GB H20 per process (DDP) fits in bf16 and not in
    # float32 (weights, gradients and AdamW's two moments: 16 bytes a parameter)
    "fail/trl-2972-qwen2.5-7b-full-ddp-oom": ("model.dtype=float32", "memory"),
}


def test_the_corpus_holds_fifteen_recipes_that_ran_and_their_sources():
    assert len(RAN) >= 15
    assert len({e["source"]["repo"] for e in CORPUS if e["kind"] == "ran"}) >= 3   # open-r1, TRL, Unsloth
    for e in CORPUS:
        assert e["source"].get("url") or e["source"].get("repo"), e["id"]
        if e["kind"] == "ran":
            assert e["hardware"]["gpu"] and e["hardware"]["gpu_memory_gib"], e["id"]
        else:
            assert "http" in e["evidence"], e["id"]   # the issue it was reported in


def test_every_known_failure_has_an_expectation():
    failures = {e["id"] for e in CORPUS if e["kind"] == "known_failure"}
    assert failures == set(REFUSED) | set(FIXED_UPSTREAM) | set(UNDECIDED)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A Hugging Face cache holding each recipe model's config.json (no weights: a dry run reads the config)."""
    home = tmp_path_factory.mktemp("hf_home")
    put_configs_in_cache(home, [e["model"]["name_or_path"] for e in CORPUS if e["model"].get("name_or_path")])
    return home


@pytest.fixture
def dry_run(hub_cache, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HOME", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(architecture, "_FOUND", {})
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: pytest.fail("a dry run started a run"))

    def run(args: list[str]) -> tuple[int, str]:
        code = entry.main([*args, f"hydra.run.dir={tmp_path / 'run'}"])
        out = capsys.readouterr()
        return code, out.out + out.err
    return run


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error [")]


@pytest.mark.parametrize("recipe", RAN)
def test_a_recipe_that_ran_passes(recipe, dry_run):
    code, text = dry_run(overrides(BY_ID[recipe]))
    assert code == 0, f"{recipe} ran in its project ({BY_ID[recipe]['source'].get('url')}); r1exp says: {_errors(text)}"
    assert "Traceback" not in text


@pytest.mark.parametrize("recipe", sorted(REFUSED))
def test_a_known_failure_is_refused_with_its_key(recipe, dry_run):
    code, text = dry_run(overrides(BY_ID[recipe]))
    assert code == 2, text[-2000:]
    assert any(f"]: {REFUSED[recipe]} = " in line for line in _errors(text)), (_errors(text), BY_ID[recipe]["evidence"])
    assert "fix: " in text and "Traceback" not in text


@pytest.mark.parametrize("recipe", sorted(FIXED_UPSTREAM))
def test_a_failure_fixed_upstream_is_not_refused_for_it(recipe, dry_run):
    why, keys = FIXED_UPSTREAM[recipe]
    code, text = dry_run(overrides(BY_ID[recipe]))
    assert not [line for line in _errors(text) if any(f"]: {key} = " in line for key in keys)], (why, _errors(text))
    assert code in (0, 2) and "Traceback" not in text


@pytest.mark.parametrize("recipe", sorted(UNDECIDED))
def test_an_undecided_failure_is_refused_in_the_reading_that_fails(recipe, dry_run):
    setting, key = UNDECIDED[recipe]
    code, text = dry_run([*overrides(BY_ID[recipe]), setting])
    assert code == 2 and any(f"]: {key} = " in line for line in _errors(text)), _errors(text)
    code, text = dry_run(overrides(BY_ID[recipe]))
    assert code == 0, _errors(text)
