"""Models built locally, without a hub: random weights with a real architecture, and a local tokenizer.

`model=tiny` is a ~0.6M-parameter Qwen2-shaped model with a byte-level BPE tokenizer trained on the task's own
text and a short warm-up on that text, so that GRPO starts from a model that sometimes answers in format and
sometimes right, as a real base model would. `model.init=random` at real shapes (0.5B, 7B) gives honest speed and
memory figures with no download. Both are cached by a hash of what they are built from.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
from pathlib import Path

from omegaconf import OmegaConf

BUILD_VERSION = 7  # bump when the way models are built changes (invalidates caches)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
FAMILY_TO_MODEL_TYPE = {"qwen2": "qwen2", "qwen3": "qwen3", "llama": "llama"}


def cache_root() -> Path:
    return Path(os.environ.get("R1EXP_CACHE", Path.home() / ".cache" / "r1exp"))


def build_key(model_cfg, data_cfg) -> str:
    spec = {"v": BUILD_VERSION, "arch": _plain(model_cfg.arch), "warmup": _plain(model_cfg.get("warmup"))}
    if model_cfg.get("warmup"):
        # the warm-up text depends on the task, not on the run's seed or dataset size
        spec["data"] = {k: v for k, v in _plain(data_cfg).items() if k not in ("seed", "num_samples", "path", "split")}
        if data_cfg.get("path"):  # a file or hub dataset: its rows are the warm-up text
            spec["data"]["source"] = [str(data_cfg.path), str(data_cfg.get("split"))]
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ensure_local_model(model_cfg, data_cfg, log=print) -> Path:
    """The folder of a locally built model (built once, then reused)."""
    folder = cache_root() / "models" / f"{model_cfg.arch.family}-{build_key(model_cfg, data_cfg)}"
    if (folder / "done").exists():
        return folder
    _remove_stale_builds(folder.parent)
    tmp = folder.with_name(f"{folder.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _build_into(tmp, model_cfg, data_cfg, log)
    except BaseException:  # a failed or interrupted build leaves nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(folder)
    return folder


TMP_MARK = ".tmp-"   # <model folder>.tmp-<host>-<pid>: a build under way (or one whose process was killed)


def _build_into(tmp: Path, model_cfg, data_cfg, log) -> None:
    warm = model_cfg.get("warmup")
    learn = _warmup_texts(data_cfg, warm.format_rate, warm.think_rate) if warm else _filler_texts()
    tokenizer = _train_tokenizer(learn, int(model_cfg.arch.vocab))
    model = _random_model(model_cfg, tokenizer)
    if warm:
        tokenizer = _as_loaded(tokenizer, model, tmp)  # warm up on the tokens the model will be given
        log(f"tiny model: warming up on task text ({warm.steps} + {warm.sloppy_steps} steps) ...")
        batch = int(warm.get("batch_size", 64))
        _warm_up(model, tokenizer, learn, warm.steps, warm.learning_rate, batch)
        sloppy = _warmup_texts(data_cfg, warm.sloppy_format_rate, warm.sloppy_think_rate)
        _warm_up(model, tokenizer, sloppy, warm.sloppy_steps, warm.sloppy_learning_rate, batch)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if not any(tmp.glob("*.safetensors")):  # transformers writes weights on rank 0 only once torch.distributed is up
        raise RuntimeError(f"the model built into {tmp} has no weights file: it was built after torch.distributed "
                           "started, on a rank other than 0 (build local models before the trainer's arguments)")
    (tmp / "done").write_text(json.dumps({"arch": _plain(model_cfg.arch)}))


def _remove_stale_builds(models: Path) -> list[Path]:
    """Remove the folders of builds on this machine whose process is gone (SIGKILL, out of memory)."""
    import psutil

    removed = []
    prefix = f"{TMP_MARK}{socket.gethostname()}-"
    for tmp in models.glob(f"*{prefix}*") if models.is_dir() else ():
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


# --- tokenizer -------------------------------------------------------------------------------------------------

def _train_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab, 4096), special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if vocab > 4096:  # real shapes: widen the vocabulary with synthetic merges, so every id decodes as real text
        tok = _widen(tok, vocab - len(TAGS))  # the special tokens are in the trained vocabulary already
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE,
    )
    fast.add_tokens(TAGS)
    return fast


def _as_loaded(tokenizer, model, folder: Path):
    """The tokenizer as TRL and vLLM will load it from the model's folder. AutoTokenizer picks the class of the
    model's type, and that class may bring its own pre-tokenizer (Qwen2's splits digits from the space before them:
    " 4" is two tokens there, one in the trained BPE). A model warmed up on the other split cannot read its prompts."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(folder)
    model.config.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def _widen(tok, size: int):
    """A byte-level BPE of `size` entries: the trained vocabulary plus merges of byte pairs, then triples.

    Added tokens would do too, but 150k of them take ~25 s to load in every process; a plain BPE loads in a second.
    """
    import json as _json

    from tokenizers import Tokenizer

    spec = _json.loads(tok.to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    alphabet = sorted(t for t in vocab if len(t) == 1)
    pairs = ((a, b) for a in alphabet for b in alphabet)
    triples = ((a + b, c) for a in alphabet for b in alphabet for c in alphabet)
    for left, right in (p for gen in (pairs, triples) for p in gen):
        if len(vocab) >= size:
            break
        if left in vocab and left + right not in vocab:
            vocab[left + right] = len(vocab)
            merges.append([left, right])
    return Tokenizer.from_str(_json.dumps(spec))


def _filler_texts() -> list[str]:
    rng = random.Random(0)
    words = ["the", "answer", "is", "think", "step", "number", "add", "sum", "so", "then"]
    return [" ".join(rng.choice(words) for _ in range(20)) + f" {rng.randint(0, 999)}" for _ in range(500)]


# --- model -----------------------------------------------------------------------------------------------------

def _random_model(model_cfg, tokenizer):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    a = model_cfg.arch
    vocab = max(int(a.vocab), len(tokenizer))
    vocab = (vocab + 63) // 64 * 64
    kwargs = dict(
        vocab_size=vocab, hidden_size=int(a.hidden), intermediate_size=int(a.intermediate),
        num_hidden_layers=int(a.layers), num_attention_heads=int(a.heads), num_key_value_heads=int(a.kv_heads),
        max_position_embeddings=int(a.max_position), tie_word_embeddings=bool(a.tie_embeddings),
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if a.get("head_dim"):
        kwargs["head_dim"] = int(a.head_dim)
    config = AutoConfig.for_model(FAMILY_TO_MODEL_TYPE[a.family], **kwargs)
    torch.manual_seed(0)
    dtype = getattr(torch, str(model_cfg.get("dtype", "float32")))
    # Real shapes (no warm-up) are initialised on the GPU when there is one: a 7B model in seconds, not minutes.
    device = "cuda" if torch.cuda.is_available() and not model_cfg.get("warmup") else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=kwargs["bos_token_id"], eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return model


def _warmup_texts(data_cfg, format_rate: float, think_rate: float) -> list[str]:
    """Task texts in chat form: a share (`format_rate`) in the <think>/<answer> format, a share (`think_rate`)
    reasoning before the answer (and right); the others answer at once with a guess (the answer of another
    question: right by chance only). The warm-up learns the task on texts that mostly reason, then briefly on
    texts that mostly do not: a model that can do the task when it reasons but mostly does not bother, as a base
    model does. RL has room to climb, and climbs by the R1 route: reasoning more, because reasoning earns the
    accuracy reward."""
    from r1exp import data

    format_rate, think_rate = float(format_rate), float(think_rate)
    rng = random.Random(f"{format_rate}/{think_rate}")
    pool = data.examples(data_cfg, n=4000, seed=1234)
    answers = [ex.answer for ex in pool]
    texts = []
    for ex in pool:
        think = rng.random() < think_rate
        reasoning, answer = (ex.reasoning, ex.answer) if think else ("", rng.choice(answers))
        if rng.random() < format_rate:
            completion = f"<think>{reasoning}</think><answer>{answer}</answer>"
        else:
            completion = f"{reasoning} = {answer}" if think else answer
        msgs = data.messages(ex.question, data_cfg.get("system_prompt"))
        msgs.append({"role": "assistant", "content": completion})
        texts.append(_render(msgs))
    return texts


def _render(msgs: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)


def _warm_up(model, tokenizer, texts: list[str], steps: int, learning_rate: float, batch_size: int = 64) -> None:
    """Causal-LM training on the completions only (the prompt is context), one-cycle learning rate."""
    import torch

    torch.manual_seed(0)
    rng = random.Random(0)
    marker = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    rows = []
    for seq in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        start = _find_last(seq, marker) + len(marker)
        rows.append((seq, start))
    steps, batch_size = int(steps), int(batch_size)
    if steps <= 0:
        return
    opt = torch.optim.AdamW(model.parameters(), lr=float(learning_rate), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(learning_rate), total_steps=steps, pct_start=0.1)
    model.train()
    pad = tokenizer.pad_token_id
    for _ in range(steps):
        batch = rng.sample(rows, batch_size)
        width = max(len(seq) for seq, _ in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        for i, (seq, start) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, start : len(seq)] = torch.tensor(seq[start:])
        loss = model(input_ids=ids, attention_mask=(ids != pad).long(), labels=labels).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.eval()


def _find_last(seq: list[int], sub: list[int]) -> int:
    for i in range(len(seq) - len(sub), -1, -1):
        if seq[i : i + len(sub)] == sub:
            return i
    raise ValueError("assistant marker not found in a warm-up text")


def _plain(node):
    if node is None:
        return None
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
