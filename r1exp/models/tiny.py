"""Models built locally, without a hub: random weights with a real architecture, and a local tokenizer.

`model=tiny` is a ~0.6M-parameter Qwen2-shaped model with a byte-level BPE tokenizer trained on the task's own
text and a short warm-up on that text, so that GRPO starts from a model that sometimes answers in format and
sometimes right, as a real base model would. `model.init=random` at real shapes (0.5B, 7B) gives honest speed and
memory figures with no download. Both are cached by a hash of what they are built from (`build_spec`).

Shipped builds. The demo's own build (conf/model/tiny.yaml on data=arithmetic) ships with the package, under
r1exp/models/shipped/<family>-<key>/ (2.2 MB): a cold cache copies it instead of building it (a build takes ~14 s
on two idle cores and much longer on busy ones; the copy 0.01 s). Only a recipe whose key is the shipped one's
gets it; any other (another task, another warm-up, a changed build) is built as before. The shipped files are the
recipe's build, nothing else: `python -m r1exp.models.tiny --write-shipped` writes them again, `--check-shipped`
rebuilds the recipe and compares (tests/test_tiny_shipped.py, slow). The warm-up runs on one thread
(`WARMUP_THREADS`): with more, its sums are split by the core count and the weights differ from machine to machine
(1 and 2 threads gave two different models from the same recipe). A build prints a line per phase (tokenizer, each
quarter of each warm-up phase with its loss and seconds, the end), where it used to be silent for up to two minutes.

Tool use (`model.warmup.tools`, conf/model/tiny_tools.yaml, experiment=tool_use; absent from the demo's recipe, whose
key it leaves as it was). The tokenizer gets TRL's copy of Qwen2.5's chat template, the one TRL parses tool calls of
(`trl.chat_template_utils.add_response_schema`), its tool tokens, and the tool prompt's boilerplate as whole tokens
(`_tool_phrases`: the prompt takes ~65 tokens instead of ~270, a call ~17). The warm-up texts are transcripts
rendered with that template and the tools' schemas, as TRL renders the prompts: a share (`call_rate`) call the first
tool with the example's worked expression, read its response and copy it into <answer></answer>; the others answer
in their head as above (`format_rate`, `think_rate`). The loss is on the model's own turns only (not on the tool's
response, which TRL masks too). The recipe's key includes a hash of the template and of the tools' schemas: a changed
docstring is another prompt, so another build.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import random
import shutil
import socket
import time
from pathlib import Path

from omegaconf import OmegaConf

# Bump when the way models are built changes (invalidates caches and the shipped build: write it again).
# 8 and 9: the warm-up on one thread, its gradient norm clipped at 1.0, logits of the completion tokens only, the
#    shared prompt prefix computed once, no attention mask; dtype in the key; tokenizer_config.json without the
#    environment's local_files_only. (8, briefly committed, had no clipping: a model that often does not learn.)
BUILD_VERSION = 9
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
FAMILY_TO_MODEL_TYPE = {"qwen2": "qwen2", "qwen3": "qwen3", "llama": "llama"}
SHIPPED = Path(__file__).resolve().parent / "shipped"   # package data: builds shipped with r1exp, by folder name
WARMUP_THREADS = 1   # torch threads while a warm-up model is built: the result must not depend on the machine's cores
# The warm-up's gradient norm is clipped: at 3e-3 without clipping the learning phase is on the edge of stability,
# and which model comes out (one GRPO lifts or not) was decided by rounding: 1 and 2 threads built two models that
# each failed the end-to-end test for one seed of 42, 1, 2 (accuracy +0.16, +0.27); clipped, three builds that
# differed only in their random init learned on all three seeds (+0.39 to +0.71).
WARMUP_CLIP = 1.0
TOOL_TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
TOOL_TEMPLATE = "qwen2_5"   # trl/chat_templates/<name>.jinja: a template TRL knows how to parse tool calls of
DONE = "done"        # written last into a build's folder: the build is complete (JSON: its recipe and who built it)


def cache_root() -> Path:
    return Path(os.environ.get("R1EXP_CACHE", Path.home() / ".cache" / "r1exp"))


def build_spec(model_cfg, data_cfg) -> dict:
    """Everything a local model is built from: two configs with the same spec build the same model."""
    spec = {"v": BUILD_VERSION, "arch": _plain(model_cfg.arch), "warmup": _plain(model_cfg.get("warmup"))}
    if model_cfg.get("dtype") not in (None, "float32"):  # the dtype the weights are created (and saved) in
        spec["dtype"] = str(model_cfg.dtype)
    if model_cfg.get("warmup"):
        # the warm-up text depends on the task, not on the run's seed or dataset size
        spec["data"] = {k: v for k, v in _plain(data_cfg).items()
                        if k not in ("seed", "num_samples", "path", "split", "max_prompt_tokens")}
        if data_cfg.get("path"):  # a file or hub dataset: its rows are the warm-up text
            spec["data"]["source"] = [str(data_cfg.path), str(data_cfg.get("split"))]
    tools = (model_cfg.get("warmup") or {}).get("tools")
    if tools:  # only a tool recipe has the key: the other recipes' keys stay as they were
        spec["tool_prompt"] = _tool_prompt_hash(tools)
    return spec


def build_key(model_cfg, data_cfg) -> str:
    spec = json.dumps(build_spec(model_cfg, data_cfg), sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def folder_name(model_cfg, data_cfg) -> str:
    return f"{model_cfg.arch.family}-{build_key(model_cfg, data_cfg)}"


def shipped_folder(model_cfg, data_cfg, root: Path | None = None) -> Path | None:
    """The shipped build of exactly this recipe, or None."""
    folder = (root or SHIPPED) / folder_name(model_cfg, data_cfg)
    return folder if (folder / DONE).exists() else None


def ensure_local_model(model_cfg, data_cfg, log=print) -> Path:
    """The folder of a locally built model: from the cache; else the shipped build of this recipe, copied into the
    cache; else built (once, then reused), with a progress line per phase."""
    folder = cache_root() / "models" / folder_name(model_cfg, data_cfg)
    if (folder / DONE).exists():
        return folder
    _remove_stale_builds(folder.parent)
    tmp = folder.with_name(f"{folder.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shipped = shipped_folder(model_cfg, data_cfg)
        if shipped is not None:
            for file in sorted(shipped.iterdir()):
                if file.is_file():
                    shutil.copyfile(file, tmp / file.name)
            log(f"tiny model: {folder.name} ships with r1exp (r1exp/models/shipped): copied into the cache, no build")
        else:
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


def _without_secrets(data_cfg):
    """The task's config with secrets left out of its system prompt: a model trained on the prompt's text keeps
    pieces of it in its tokenizer (the run's files are scrubbed, a vocabulary cannot be)."""
    from r1exp.records.secrets import redact_text

    prompt = data_cfg.get("system_prompt")
    if not prompt or redact_text(str(prompt)) == str(prompt):
        return data_cfg
    data_cfg = data_cfg.copy()
    data_cfg.system_prompt = redact_text(str(prompt))
    return data_cfg


def _recipe_tokenizer(model_cfg, data_cfg):
    """(the recipe's tokenizer, the warm-up's learning-phase texts it was trained on): the build's first step."""
    data_cfg = _without_secrets(data_cfg)
    warm = model_cfg.get("warmup")
    tools = warm.get("tools") if warm else None
    if tools:
        learn = _tool_warmup_texts(data_cfg, tools, warm.format_rate, warm.think_rate, tools.call_rate)
    else:
        learn = _warmup_texts(data_cfg, warm.format_rate, warm.think_rate) if warm else _filler_texts()
    phrases = _tool_phrases(data_cfg, tools) if tools else None
    return _train_tokenizer(learn, int(model_cfg.arch.vocab), phrases=phrases), learn


_TOKENIZERS: dict = {}


def recipe_tokenizer(model_cfg, data_cfg):
    """The tokenizer a recipe's build will have, without building the model (a couple of seconds, kept for the
    process): what the pre-flight counts a prompt's tokens with before the model is built."""
    key = build_key(model_cfg, data_cfg)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = _recipe_tokenizer(model_cfg, data_cfg)[0]
    return _TOKENIZERS[key]


def _build_into(tmp: Path, model_cfg, data_cfg, log) -> None:
    start = time.perf_counter()
    data_cfg = _without_secrets(data_cfg)
    warm = model_cfg.get("warmup")
    if warm:
        log(f"tiny model: building {folder_name(model_cfg, data_cfg)} (no cached or shipped build of this recipe): "
            f"tokenizer, then a warm-up of {warm.steps} + {warm.sloppy_steps} steps on the task's text")
    tools = warm.get("tools") if warm else None
    tokenizer, learn = _recipe_tokenizer(model_cfg, data_cfg)
    with _torch_threads(WARMUP_THREADS if warm else None):
        model = _random_model(model_cfg, tokenizer)
        if warm:
            tokenizer = _as_loaded(tokenizer, model, tmp)  # warm up on the tokens the model will be given
            params = sum(p.numel() for p in model.parameters())
            log(f"tiny model: tokenizer ({len(tokenizer)} tokens) and random weights ({params / 1e6:.2f}M "
                f"parameters) in {time.perf_counter() - start:.1f} s")
            batch = int(warm.get("batch_size", 64))
            _warm_up(model, tokenizer, learn, warm.steps, warm.learning_rate, batch, log=log, phase="learn")
            if tools:
                sloppy = _tool_warmup_texts(data_cfg, tools, warm.sloppy_format_rate, warm.sloppy_think_rate,
                                            tools.sloppy_call_rate)
            else:
                sloppy = _warmup_texts(data_cfg, warm.sloppy_format_rate, warm.sloppy_think_rate)
            _warm_up(model, tokenizer, sloppy, warm.sloppy_steps, warm.sloppy_learning_rate, batch, log=log,
                     phase="sloppy")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if not any(tmp.glob("*.safetensors")):  # transformers writes weights on rank 0 only once torch.distributed is up
        raise RuntimeError(f"the model built into {tmp} has no weights file: it was built after torch.distributed "
                           "started, on a rank other than 0 (build local models before the trainer's arguments)")
    _drop_environment(tmp / "tokenizer_config.json")
    (tmp / DONE).write_text(json.dumps({"arch": _plain(model_cfg.arch), "recipe": build_spec(model_cfg, data_cfg),
                                        "built_with": _built_with()}, indent=1, sort_keys=True, default=str) + "\n")
    if warm:
        log(f"tiny model: built in {time.perf_counter() - start:.1f} s")


def _drop_environment(path: Path) -> None:
    """transformers saves `local_files_only` (true under HF_HUB_OFFLINE) with the tokenizer: not part of the build."""
    if path.exists():
        config = json.loads(path.read_text())
        if config.pop("local_files_only", None) is not None:
            path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _built_with() -> dict:
    """Where a build was made: what to compare first when a rebuild differs from a shipped build."""
    import platform

    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "machine": platform.machine(), "cpu": torch.backends.cpu.get_cpu_capability()}


@contextlib.contextmanager
def _torch_threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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

def _train_tokenizer(texts: list, vocab: int, phrases: list[str] | None = None):
    """A byte-level BPE trained on the texts. With `phrases` (a tool recipe): the texts are transcripts (lists of
    segments); the tags, the tool tokens and the phrases (`_tool_phrases`) are whole tokens before training (the BPE
    spends no merges on them); the chat template is TRL's Qwen2.5 template (TOOL_TEMPLATE)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tool_template = phrases is not None
    if tool_template:
        texts = ["".join(text for text, _ in segments) for segments in texts]
        tok.add_special_tokens(SPECIAL)
        tok.add_tokens(TAGS + TOOL_TAGS + phrases)
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab, 4096), special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if vocab > 4096:  # real shapes: widen the vocabulary with synthetic merges, so every id decodes as real text
        tok = _widen(tok, vocab - len(TAGS))  # the special tokens are in the trained vocabulary already
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=_tool_template() if tool_template else CHAT_TEMPLATE,
    )
    fast.add_tokens(TAGS + TOOL_TAGS + phrases if tool_template else TAGS)
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
    config = AutoConfig.for_model(FAMILY_TO_MODEL_TYPE.get(a.family, a.family), **kwargs)
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
        completion = _head_answer(ex, answers, rng, think_rate, format_rate)
        msgs = data.messages(ex.question, data_cfg.get("system_prompt"))
        msgs.append({"role": "assistant", "content": completion})
        texts.append(_render(msgs))
    return texts


def _head_answer(ex, answers: list, rng, think_rate: float, format_rate: float) -> str:
    """A warm-up completion without a tool: reasoned and right (think_rate), or a guess among the task's answers;
    in the <think>/<answer> format (format_rate) or bare. The draws' order is part of every shipped build."""
    think = rng.random() < think_rate
    reasoning, answer = (ex.reasoning, ex.answer) if think else ("", rng.choice(answers))
    if rng.random() < format_rate:
        return f"<think>{reasoning}</think><answer>{answer}</answer>"
    return f"{reasoning} = {answer}" if think else answer


def _render(msgs: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)


# --- tool use ----------------------------------------------------------------------------------------------------

def chat_template_for(model_cfg) -> str:
    """The chat template a recipe's tokenizer gets: TRL's tool template with `model.warmup.tools`, else CHAT_TEMPLATE
    (read by the tool checks, r1exp/tools/template.py, before anything is built)."""
    warm = model_cfg.get("warmup")
    return _tool_template() if warm and warm.get("tools") else CHAT_TEMPLATE


def _tool_template() -> str:
    """TRL's copy of a chat template it parses tool calls of (read from its package: no TRL import)."""
    import importlib.util

    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("model.warmup.tools needs TRL installed: its chat template is TRL's copy of Qwen2.5's")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return (folder / "chat_templates" / f"{TOOL_TEMPLATE}.jinja").read_text(encoding="utf-8")


def _tool_functions(tools_cfg) -> list:
    from hydra.utils import get_method

    names = list(tools_cfg.functions)
    if not names:
        raise ValueError("model.warmup.tools.functions is empty: name the tool the warm-up calls (its import path)")
    return [get_method(str(name)) for name in names]


def _tool_prompt_hash(tools_cfg) -> str:
    """What the tool prompt is made of: the template and the tools' schemas (name, arguments, docstring)."""
    from transformers.utils import get_json_schema

    schemas = [get_json_schema(fn) for fn in _tool_functions(tools_cfg)]
    text = _tool_template() + json.dumps(schemas, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tool_warmup_texts(data_cfg, tools_cfg, format_rate: float, think_rate: float, call_rate: float) -> list:
    """Transcripts as lists of (text, trained) segments, rendered with the tool template and the tools' schemas: the
    prompt (not trained); a share (`call_rate`) call the first tool on the example's worked expression
    (`Example.reasoning`, e.g. "4821 + 3770"), the tool's response (not trained: TRL masks it too) and an answer that
    copies the response; the others answer at once, as `_warmup_texts` writes them (`format_rate`, `think_rate`).

    The template is rendered once per kind of transcript with placeholders, which each example fills in (rendering
    4000 transcripts took 4 s); the first example of each kind is checked against a full rendering."""
    from r1exp import data

    format_rate, think_rate, call_rate = float(format_rate), float(think_rate), float(call_rate)
    functions = _tool_functions(tools_cfg)
    tool = functions[0]
    argument = next(iter(inspect.signature(tool).parameters))   # the calculator's `expression`
    render = _tool_renderer(functions)
    shapes = {}

    def shape(kind, *fields):
        """The segments of a transcript of this kind with these fields: its rendering with placeholders, filled in."""
        if kind not in shapes:
            marks = [f"@@{i}@@" for i in range(len(fields))]   # left as they are by the template's tojson
            shapes[kind] = _tool_segments(render, kind, data_cfg.get("system_prompt"), tool, argument, *marks)
        segments = shapes[kind]
        out = []
        for text, train in segments:
            for i, value in enumerate(fields):
                text = text.replace(f"@@{i}@@", value)
            out.append((text, train))
        return out

    rng = random.Random(f"tools/{format_rate}/{think_rate}/{call_rate}")
    pool = data.examples(data_cfg, n=4000, seed=1234)
    answers = [ex.answer for ex in pool]
    texts, checked = [], set()
    for ex in pool:
        if rng.random() < call_rate:
            kind, fields = "call", (ex.question, ex.reasoning, str(tool(ex.reasoning)))
        else:
            kind, fields = "head", (ex.question, _head_answer(ex, answers, rng, think_rate, format_rate))
        segments = shape(kind, *fields)
        if kind not in checked:
            checked.add(kind)
            if segments != _tool_segments(render, kind, data_cfg.get("system_prompt"), tool, argument, *fields):
                raise RuntimeError(f"the tool template renders a {kind} transcript otherwise than its placeholders")
        texts.append(segments)
    return texts


def _tool_phrases(data_cfg, tools_cfg) -> list[str]:
    """The tool prompt's boilerplate as whole tokens: each piece of the system turn between line breaks and tags
    (the tools' instructions, each tool's JSON schema) and the opening of each tool's call up to its first argument's
    value (`{"name": "calculator", "arguments": {"expression": "`). The byte-level BPE cannot merge across the pieces
    Qwen2's pre-tokenizer splits text into: without them the prompt took ~270 tokens (the question ~15) and a call
    put ~30 tokens between the question's numbers and their copy in the call, which the tiny model learned to copy
    only after ~1000 warm-up steps (with them: ~20 tokens, learned in 500 steps)."""
    import re

    functions = _tool_functions(tools_cfg)
    render = _tool_renderer(functions)
    prompt = render([{"role": "system", "content": "@@"}, {"role": "user", "content": "@@"}], generation=True)
    system = prompt.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0].replace("@@", "\n")
    tags = "|".join(re.escape(t) for t in SPECIAL + TAGS + TOOL_TAGS)
    pieces = [p for line in system.split("\n") for p in re.split(tags, line) if len(p.strip()) > 1]
    for fn in functions:
        argument = next(iter(inspect.signature(fn).parameters))
        call = json.dumps({"name": fn.__name__, "arguments": {argument: "@@"}})  # as the template's tojson writes it
        pieces.append(call.split("@@", 1)[0])
    return list(dict.fromkeys(pieces))


def _tool_renderer(functions):
    from transformers.utils.chat_template_utils import render_jinja_template

    template = _tool_template()

    def render(msgs, generation=False):
        return render_jinja_template([msgs], tools=functions, chat_template=template,
                                     add_generation_prompt=generation)[0][0]

    return render


def _tool_segments(render, kind, system_prompt, tool, argument, question, *fields) -> list:
    """One transcript's (text, trained) segments: "call" (fields: expression, the tool's result) or "head" (fields:
    the completion). They join into the whole transcript as the template renders it (checked)."""
    from r1exp import data

    msgs = data.messages(question, system_prompt)
    prompt = render(msgs, generation=True)
    if kind == "head":
        done = render([*msgs, {"role": "assistant", "content": fields[0]}])
        segments = [(prompt, False), (done[len(prompt):], True)]
    else:
        expression, result = fields
        msgs = [*msgs, {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": tool.__name__, "arguments": {argument: expression}}}]}]
        called = render(msgs)
        msgs.append({"role": "tool", "name": tool.__name__, "content": result})
        responded = render(msgs, generation=True)
        msgs.append({"role": "assistant", "content": f"<answer>{result}</answer>"})
        done = render(msgs)
        end = called.rindex("<|im_end|>") + len("<|im_end|>")  # TRL's completion ends at EOS; "\n" is the tool's
        segments = [(prompt, False), (called[len(prompt):end], True), (responded[end:], False),
                    (done[len(responded):], True)]
    if "".join(text for text, _ in segments) != done:
        raise RuntimeError("the tool template does not render a transcript as a prefix of the next turn's")
    return segments


def _tokenized_segments(tokenizer, texts: list):
    """`_tokenized` for transcripts of (text, trained) segments: targets only at the tokens of trained segments.
    Every segment is tokenized apart (they meet at special tokens, so the ids are those of the whole text)."""
    import torch

    seqs, trained = [], []
    for segments in texts:
        ids, mask = [], []
        for text, train in segments:
            piece = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            mask += [train] * len(piece)
        seqs.append(ids)
        trained.append(mask)
    width = max(len(seq) for seq in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    targets = torch.full((len(seqs), width), -100)
    prefix = width
    for i, (seq, mask) in enumerate(zip(seqs, trained)):
        ids[i, : len(seq)] = torch.tensor(seq)
        for t in range(1, len(seq)):
            if mask[t]:
                targets[i, t - 1] = seq[t]
        start = mask.index(True)
        same = next((k for k, (a, b) in enumerate(zip(seq, seqs[0])) if a != b), min(len(seq), len(seqs[0])))
        prefix = min(prefix, same, start)
    return ids, targets, torch.tensor([len(seq) for seq in seqs]), prefix


def _warm_up(model, tokenizer, texts: list[str], steps: int, learning_rate: float, batch_size: int = 64, log=None,
             phase: str = "") -> None:
    """Causal-LM training on the completions only (the prompt is context), one-cycle learning rate, the gradient's
    norm clipped at WARMUP_CLIP.

    The texts are tokenized once into one right-padded tensor; a step takes its rows by index, cut to the longest.
    What every text begins with (the system prompt, "What is": 26 of ~46 tokens for arithmetic) is computed once
    per step and its keys and values shared by the batch (`_loss`); logits only for the completion tokens; no
    attention mask (padding is on the right, attention causal). The same loss as the whole batch through the whole
    model, at under half the cost. A progress line every quarter of the steps."""
    import torch

    steps, batch_size = int(steps), int(batch_size)
    if steps <= 0:
        return
    torch.manual_seed(0)
    rng = random.Random(0)
    tokenize = _tokenized if isinstance(texts[0], str) else _tokenized_segments
    ids, targets, lengths, prefix = tokenize(tokenizer, texts)
    opt = torch.optim.AdamW(model.parameters(), lr=float(learning_rate), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(learning_rate), total_steps=steps, pct_start=0.1)
    model.train()
    start, losses = time.perf_counter(), []
    report = {min(steps, max(1, round(steps * q / 4))) for q in (1, 2, 3, 4)}
    for step in range(1, steps + 1):
        rows = torch.tensor(rng.sample(range(len(lengths)), batch_size))
        width = int(lengths[rows].max())
        loss = _loss(model, ids[rows, :width], targets[rows, : width - 1], prefix)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), WARMUP_CLIP)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log is not None and step in report:
            log(f"tiny model: warm-up ({phase}) {step}/{steps} steps, loss {sum(losses) / len(losses):.3f}, "
                f"{time.perf_counter() - start:.1f} s")
            losses = []
    model.eval()


def _loss(model, ids, targets, prefix: int):
    """Mean cross-entropy of the completion tokens: targets[:, t] (-100: none) is the token after ids[:, t].

    The first `prefix` tokens are the same in every row: they go through the model once, as a batch of one, and
    the rest of each row attends to their keys and values (repeated, so that their gradient is the batch's)."""
    import torch
    import torch.nn.functional as F

    body, head = model.get_decoder(), model.get_output_embeddings()
    if prefix:
        shared = body(input_ids=ids[:1, :prefix], use_cache=True)
        cache = shared.past_key_values
        cache.batch_repeat_interleave(len(ids))
        last = shared.last_hidden_state[:, -1:].expand(len(ids), 1, -1)  # predicts the first token after the prefix
        rest = body(input_ids=ids[:, prefix:-1], past_key_values=cache).last_hidden_state
        hidden, targets = torch.cat([last, rest], dim=1), targets[:, prefix - 1 :]
    else:
        hidden = body(input_ids=ids[:, :-1]).last_hidden_state
    keep = targets != -100
    return F.cross_entropy(head(hidden[keep]).float(), targets[keep])


def _tokenized(tokenizer, texts: list[str]):
    """(ids, targets, lengths, prefix): the texts right-padded into one tensor; targets[i, t] is the token after
    position t where it belongs to the completion (after the last assistant marker), -100 elsewhere; `prefix` is how
    many tokens every text begins with (at most up to the first completion token)."""
    import torch

    marker = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    seqs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    width = max(len(seq) for seq in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    targets = torch.full((len(seqs), width), -100)
    prefix = width
    for i, seq in enumerate(seqs):
        start = _find_last(seq, marker) + len(marker)
        ids[i, : len(seq)] = torch.tensor(seq)
        targets[i, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
        same = next((k for k, (a, b) in enumerate(zip(seq, seqs[0])) if a != b), min(len(seq), len(seqs[0])))
        prefix = min(prefix, same, start)
    return ids, targets, torch.tensor([len(seq) for seq in seqs]), prefix


def _find_last(seq: list[int], sub: list[int]) -> int:
    for i in range(len(seq) - len(sub), -1, -1):
        if seq[i : i + len(sub)] == sub:
            return i
    raise ValueError("assistant marker not found in a warm-up text")


def _plain(node):
    if node is None:
        return None
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


# --- the shipped build -----------------------------------------------------------------------------------------

def write_shipped(overrides: list[str] = (), root: Path | None = None, log=print) -> Path:
    """Build the recipe of `python -m r1exp OVERRIDES` (default: the demo's) into root (default r1exp/models/shipped),
    replacing the shipped builds of the same family and task made from another recipe."""
    from r1exp.config.compose import compose

    cfg = compose(list(overrides))
    root = root or SHIPPED
    folder = root / folder_name(cfg.model, cfg.data)
    tmp = root / f"{TMP_MARK}{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _build_into(tmp, cfg.model, cfg.data, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in [f for f in root.iterdir() if f.is_dir() and f != tmp and _same_task(f, cfg)]:
        shutil.rmtree(old)
        log(f"tiny model: removed the shipped build {old.name} (another recipe for data={cfg.data.name})")
    tmp.rename(folder)
    size = sum(f.stat().st_size for f in folder.iterdir())
    log(f"tiny model: shipped build {folder} ({size / 1e6:.2f} MB); add it to git")
    return folder


def _same_task(folder: Path, cfg) -> bool:
    try:
        recipe = json.loads((folder / DONE).read_text())["recipe"]
    except (OSError, ValueError, KeyError):
        return folder.name.startswith(TMP_MARK)  # a leftover of an interrupted --write-shipped
    return recipe["arch"]["family"] == cfg.model.arch.family and (recipe.get("data") or {}).get("name") == cfg.data.name


def differences(built: Path, shipped: Path) -> list[str]:
    """What differs between two builds (empty: the same model and tokenizer). Weights are compared bit for bit;
    `done` by its recipe only (not by the versions that made it)."""
    from safetensors.torch import load_file

    out = []
    names = {f.name for f in built.iterdir() if f.is_file()} | {f.name for f in shipped.iterdir() if f.is_file()}
    for name in sorted(names):
        a, b = built / name, shipped / name
        if not (a.exists() and b.exists()):
            out.append(f"{name}: only in {a.parent if a.exists() else b.parent}")
        elif name.endswith(".safetensors"):
            x, y = load_file(a), load_file(b)
            if set(x) != set(y):
                out.append(f"{name}: tensors {sorted(set(x) ^ set(y))} in one build only")
            for key in sorted(set(x) & set(y)):
                if x[key].shape != y[key].shape or x[key].dtype != y[key].dtype:
                    out.append(f"{name}: {key} is {tuple(x[key].shape)} {x[key].dtype}, shipped "
                               f"{tuple(y[key].shape)} {y[key].dtype}")
                elif not x[key].equal(y[key]):
                    out.append(f"{name}: {key} differs by up to {(x[key] - y[key]).abs().max().item():.3g}")
        elif name == DONE:
            ra, rb = (json.loads(f.read_text()) for f in (a, b))
            if ra.get("recipe") != rb.get("recipe"):
                out.append(f"{name}: recipe {ra.get('recipe')} != shipped {rb.get('recipe')}")
            elif out:
                out.append(f"built with {ra.get('built_with')}, shipped built with {rb.get('built_with')}")
        elif a.read_bytes() != b.read_bytes():
            out.append(f"{name}: contents differ")
    return out


def check_shipped(overrides: list[str] = (), log=print) -> list[str]:
    """Rebuild the recipe of `python -m r1exp OVERRIDES` and compare it with its shipped build."""
    import tempfile

    from r1exp.config.compose import compose

    cfg = compose(list(overrides))
    shipped = shipped_folder(cfg.model, cfg.data)
    if shipped is None:
        name = folder_name(cfg.model, cfg.data)
        return [f"no shipped build {name} for this recipe under {SHIPPED}: python -m r1exp.models.tiny --write-shipped"]
    with tempfile.TemporaryDirectory() as tmp:
        _build_into(Path(tmp), cfg.model, cfg.data, log)
        return differences(Path(tmp), shipped)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m r1exp.models.tiny",
        description="The tiny model's shipped build (r1exp/models/shipped): write it again from its recipe, or "
                    "rebuild it and compare. OVERRIDES as for python -m r1exp (default: the demo, model=tiny).")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-shipped", action="store_true", help="build the recipe into r1exp/models/shipped")
    action.add_argument("--check-shipped", action="store_true", help="rebuild and compare with the shipped build")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.write_shipped:
        write_shipped(args.overrides)
        return 0
    diffs = check_shipped(args.overrides)
    for line in diffs:
        print(f"differs: {line}")
    print("the rebuild differs from the shipped build" if diffs else "the rebuild equals the shipped build")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
