"""An evaluation with the run's own engine: the held-out prompts, k completions each, scored by the run's rewards.

Generation goes through the engine the trainer generates with, so no second engine and no second copy of the
weights: TRL's vLLM generation (in-process colocate, or the server through its client) after it has loaded the
current weights, with the evaluation's sampling settings in place of training's for the one call; transformers'
`generate` on the trainer's model otherwise (engine=hf). A completion is correct when the `eval.correct` reward gives
it at least 1. Each process evaluates its share of the prompts and the main process gathers them.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from r1exp.evaluation.metrics import PromptResult, summarize
from r1exp.rewards.text import completion_text, extract_answer, normalize

SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_completion_length")


@dataclass(frozen=True)
class Settings:
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    correct: str          # the reward that marks a completion correct (score >= 1)

    @classmethod
    def of(cls, cfg) -> Settings:
        from r1exp.evaluation.heldout import correctness_reward

        e = cfg.eval
        max_tokens = e.get("max_tokens") or cfg.trainer.get("max_completion_length") or 256
        return cls(int(e.k), float(e.temperature), float(e.get("top_p") or 1.0), int(max_tokens),
                   str(correctness_reward(cfg)))


class Evaluator:
    def __init__(self, trainer, reward_funcs, rows: list[dict], settings: Settings, tags=None):
        self.trainer, self.funcs, self.rows, self.settings, self.tags = trainer, reward_funcs, rows, settings, tags
        self._ids: dict = {}   # a prompt's token ids, rendered once (the prompts are the same at every evaluation)

    def evaluate(self) -> dict:
        """The scores of the current weights on this process's share of the prompts, gathered over processes."""
        start = time.perf_counter()
        accelerator = self.trainer.accelerator
        share = self.rows[accelerator.process_index::accelerator.num_processes]
        completions = self.generate([r["prompt"] for r in share]) if share else []
        results = [self.score(row, texts, lengths) for row, (texts, lengths) in zip(share, completions)]
        if accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            results = gather_object(results)
        out = summarize(results, self.settings.k)
        out["seconds"] = round(time.perf_counter() - start, 3)
        return out

    # -- generation

    def generate(self, prompts: list) -> list[tuple[list, list[int]]]:
        """k completions (texts, or chat messages in a tool run; token counts) of each prompt, with the engine the
        trainer generates with."""
        if getattr(self.trainer, "tools", None):
            return self._with_tools(prompts)
        tokenizer = self.trainer.processing_class
        ids = [self._prompt_ids(p) for p in prompts]
        k = self.settings.k
        if getattr(self.trainer, "use_vllm", False) and getattr(self.trainer, "vllm_generation", None) is not None:
            outputs = self._vllm(ids)
        else:
            outputs = self._transformers(ids)
        texts = [tokenizer.decode(o, skip_special_tokens=True) for o in outputs]
        return [(texts[i * k:(i + 1) * k], [len(o) for o in outputs[i * k:(i + 1) * k]]) for i in range(len(ids))]

    def _with_tools(self, prompts: list) -> list[tuple[list, list[int]]]:
        """A tool run's completions come out of TRL's own rollout (`_generate`: generation, tool calls, generation
        again), with the evaluation's sampling for the call and the trainer's metrics and tool tables as they were
        (TRL keeps per-batch tool tables, rebuilt by each training batch). Token counts are the model's own tokens
        (TRL's tool mask), not the tools' results."""
        import copy
        import inspect

        trainer, k = self.trainer, self.settings.k
        repeated = [p for p in prompts for _ in range(k)]
        tools = list(getattr(trainer, "_standalone_tools", None) or trainer.tools)
        sync = {t.__name__: t for t in tools if not inspect.iscoroutinefunction(t)}
        run_async = {t.__name__: t for t in tools if inspect.iscoroutinefunction(t)}
        kept = {name: getattr(trainer, name, None) for name in ("_sync_tool_dicts", "_async_tool_dicts")}
        metrics = copy.deepcopy(trainer._metrics)
        model = trainer.model
        was_training = model.training
        trainer._sync_tool_dicts = [sync] * len(repeated)
        trainer._async_tool_dicts = [run_async] * len(repeated)
        model.eval()
        try:
            with self._trainer_sampling():
                _, completion_ids, tool_mask, completions, *_ = trainer._generate(repeated)
        finally:
            model.train(was_training)
            trainer._metrics = metrics
            for name, value in kept.items():
                setattr(trainer, name, value)
        lengths = [sum(m) for m in tool_mask] if tool_mask is not None else [len(c) for c in completion_ids]
        return [(completions[i * k:(i + 1) * k], lengths[i * k:(i + 1) * k]) for i in range(len(prompts))]

    @contextlib.contextmanager
    def _trainer_sampling(self):
        """The evaluation's sampling wherever the trainer generates from: TRL's vLLM generation, else its
        GenerationConfig (transformers' generate)."""
        generation = getattr(self.trainer, "vllm_generation", None)
        if getattr(self.trainer, "use_vllm", False) and generation is not None:
            with self._sampling(generation):
                yield
            return
        config, s = getattr(self.trainer, "generation_config", None), self.settings
        if config is None:
            yield
            return
        with _attributes(config, {"max_new_tokens": s.max_tokens, "do_sample": s.temperature > 0,
                                  "temperature": s.temperature or None,
                                  "top_p": s.top_p if s.temperature > 0 else None}):
            yield

    def _prompt_ids(self, prompt) -> list[int]:
        key = repr(prompt)
        if key not in self._ids:
            tokenizer = self.trainer.processing_class
            self._ids[key] = _token_ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True,
                                                                      tokenize=True))
        return self._ids[key]

    def _vllm(self, ids: list[list[int]]) -> list[list[int]]:
        trainer, generation, k = self.trainer, self.trainer.vllm_generation, self.settings.k
        if trainer.state.global_step != getattr(trainer, "_last_loaded_step", None):
            generation.sync_weights()   # the weights of this step, as TRL loads them before it generates
            trainer._last_loaded_step = trainer.state.global_step
        with self._sampling(generation):
            _, completion_ids, _, _ = generation.generate(prompts=[p for p in ids for _ in range(k)], images=None,
                                                          num_generations=k)
        return [list(c) for c in completion_ids]

    @contextlib.contextmanager
    def _sampling(self, generation):
        """The evaluation's sampling settings on TRL's generation object for one call (greedy: temperature 0)."""
        s = self.settings
        wanted = {"temperature": s.temperature, "top_p": s.top_p, "top_k": -1 if s.temperature == 0 else None,
                  "min_p": 0.0, "repetition_penalty": 1.0, "max_completion_length": s.max_tokens}
        with _attributes(generation, {name: value for name, value in wanted.items()
                                      if name in SAMPLING and hasattr(generation, name) and value is not None}):
            yield

    def _transformers(self, ids: list[list[int]]) -> list[list[int]]:
        import torch
        from transformers import GenerationConfig

        s, trainer = self.settings, self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = trainer.processing_class
        config = GenerationConfig(max_new_tokens=s.max_tokens, do_sample=s.temperature > 0,
                                  temperature=s.temperature or None, top_p=s.top_p if s.temperature > 0 else None,
                                  num_return_sequences=s.k, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
        pad, batch = tokenizer.pad_token_id, max(1, int(trainer.args.per_device_train_batch_size) // s.k)
        was_training = model.training
        model.eval()
        completions = []
        try:
            for start in range(0, len(ids), batch):   # a training micro-batch of sequences at a time: the plan's KV
                chunk = ids[start:start + batch]
                width = max(len(i) for i in chunk)
                input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in chunk], device=model.device)
                mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in chunk], device=model.device)
                with torch.no_grad():
                    out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
                completions += out[:, width:].tolist()
        finally:
            model.train(was_training)
        return [_until_eos(c, tokenizer.eos_token_id, pad) for c in completions]

    # -- scoring

    def score(self, row: dict, texts: list, lengths: list[int]) -> PromptResult:
        """Every reward on the k completions of one prompt (texts, or a tool run's chat messages), with the row's
        columns as TRL passes them."""
        k = len(texts)
        columns = {key: [value] * k for key, value in row.items() if key != "prompt"}
        completions = [t if isinstance(t, list) else [{"role": "assistant", "content": t}] for t in texts]
        rewards = {}
        for func in self.funcs:
            name = getattr(func, "__name__", str(func))
            plain = getattr(func, "fn", func)   # not the guarded one: its counters are the training steps'
            try:
                scores = plain(prompts=[row["prompt"]] * k, completions=completions, completion_ids=None, **columns)
            except Exception:  # noqa: BLE001 - a reward that raises scores nothing here, as in training
                scores = [None] * k
            rewards[name] = [None if v is None else float(v) for v in scores]
        marks = rewards.get(self.settings.correct) or [0.0] * k
        answers = [_answer(completion_text(c), self.tags) for c in completions]
        return PromptResult(correct=[m is not None and m >= 1.0 for m in marks], answers=answers, rewards=rewards,
                            lengths=lengths)


@contextlib.contextmanager
def _attributes(obj, values: dict):
    """These attribute values on obj for the duration of the block, the old ones back after it."""
    saved = {name: getattr(obj, name, None) for name in values}
    for name, value in values.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


def _token_ids(rendered) -> list[int]:
    """The prompt's token ids, whether the tokenizer returned them as a list or in a BatchEncoding (transformers 5)."""
    if hasattr(rendered, "keys") and "input_ids" in rendered:
        rendered = rendered["input_ids"]
    rendered = list(rendered)
    return list(rendered[0]) if rendered and isinstance(rendered[0], list) else [int(t) for t in rendered]


def _answer(text: str, tags) -> str | None:
    found = extract_answer(text, tags)
    return normalize(found) if found is not None else None


def _until_eos(tokens: list[int], eos: int, pad: int) -> list[int]:
    """A generated row up to its end-of-sequence token (kept, as vLLM keeps it), without the padding after it."""
    if eos in tokens:
        return tokens[:tokens.index(eos) + 1]
    return [t for t in tokens if t != pad]
