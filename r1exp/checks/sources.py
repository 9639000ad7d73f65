"""Is the model there? The row of the rules table about `model.name_or_path`, checked before anything heavy, in
well under two seconds (machine scope: it is about this machine's disk and network).

- `model.init=random`: the model is built here from its `arch` (r1exp.models.tiny), nothing to look for.
- A local folder (an existing path, or text that can only be a path: `/...`, `./...`, `~/...`, `a/b/c`): it exists
  and holds what `from_pretrained` and the trainer read: config.json, tokenizer files, the weights (every shard an
  index names) and a chat template (r1exp's prompts are chat messages, r1exp.data, which TRL renders with it).
- A hub id (`owner/name`): complete in the local Hugging Face cache, the same checks on the cached snapshot; else,
  with the hub offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE), missing; else the hub is asked once
  (r1exp.machine.hub.ask, 2 s at most): it must exist, and a gated model needs a token. No answer is no network: missing.

Every problem names its fix: `hf download <id>`, `model.name_or_path=/path`, or `model.init=random`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from r1exp.machine import hub
from r1exp.config.rule import Rule, get
from r1exp.errors import Problem

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def missing_parts(folder: Path, template_given: bool = False) -> list[str]:
    """What a model folder lacks for r1exp to load and prompt it ([] when complete); `template_given`:
    model.chat_template replaces the folder's own."""
    names = {p.name for p in folder.iterdir() if p.exists()}  # exists(): a cache symlink to a missing blob is absent
    missing = []
    if "config.json" not in names:
        missing.append("config.json (the architecture)")
    if not names & set(TOKENIZER_FILES):
        missing.append(f"tokenizer files (one of {', '.join(TOKENIZER_FILES[:4])}, ...)")
    missing += _missing_weights(folder, names)
    if not template_given and not _has_chat_template(folder, names):
        missing.append("a chat template (tokenizer_config.json's chat_template, or chat_template.jinja): r1exp's "
                       "prompts are chat messages")
    return missing


def _missing_weights(folder: Path, names: set) -> list[str]:
    for index in WEIGHT_INDEXES:
        if index in names:
            try:
                shards = set(json.loads((folder / index).read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return [f"readable weights ({index} is not a valid index)"]
            absent = sorted(s for s in shards if not (folder / s).exists())
            return [f"{len(absent)} of the {len(shards)} weight shards {index} names ({', '.join(absent[:3])}"
                    f"{', ...' if len(absent) > 3 else ''})"] if absent else []
    if any(n.endswith(WEIGHT_SUFFIXES) and not n.startswith("training_args") for n in names):
        return []
    return ["the weights (*.safetensors or *.bin)"]


def _has_chat_template(folder: Path, names: set) -> bool:
    if names & set(CHAT_TEMPLATE_FILES) or (folder / "additional_chat_templates").is_dir():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def looks_like_a_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~", ".")) or text.count("/") >= 2 or not hub.is_repo_id(text)


FIX_GET = ("`hf download {id}` on a machine with network (with this machine's HF_HOME; on an offline cluster copy "
           "the cache over), or model.name_or_path=/path/to/a/local/copy, or model.init=random for speed/memory "
           "work (random weights at the real shape, built here)")


def model_source(ctx):
    cfg = ctx.cfg
    if get(cfg, "model.init") == "random":
        return
    name = get(cfg, "model.name_or_path")
    if not isinstance(name, str) or not name.strip():
        return  # the schema's rows report it
    local = Path(name).expanduser()
    template = bool(get(cfg, "model.chat_template"))
    if _exists(local) or looks_like_a_path(name):
        yield from _local_folder(name, local, template)
    else:
        yield from _hub_model(name, template)


def _local_folder(name: str, folder: Path, template: bool = False):
    key = "model.name_or_path"
    fix_path = ("point model.name_or_path at a folder saved with save_pretrained (or a hub id like "
                "Qwen/Qwen2.5-0.5B-Instruct), or use model.init=random for speed/memory work")
    if not _exists(folder):
        yield Problem(key, name, f"no such folder (looked at {os.path.abspath(folder)}), and it is not a hub id either",
                      fix_path)
    elif not folder.is_dir():
        yield Problem(key, name, "a file, not a model folder", fix_path)
    else:
        try:
            missing = missing_parts(folder, template)
        except OSError as e:
            yield Problem(key, name, f"cannot read the folder: {e.strerror}", fix_path)
            return
        if missing:
            yield Problem(key, name, f"the folder lacks {'; '.join(missing)}",
                          "complete the folder (save_pretrained writes the model and the tokenizer), or " + fix_path)


def _hub_model(repo_id: str, template: bool = False):
    key = "model.name_or_path"
    fix = FIX_GET.format(id=repo_id)
    snapshot = hub.cached_snapshot(repo_id)
    if snapshot is not None:
        try:
            missing = missing_parts(snapshot, template)
        except OSError as e:
            missing = [f"a readable snapshot ({e.strerror})"]
        if not missing:
            return
        if missing[0].startswith("a chat template"):  # all there but the template: a download will not add one
            yield Problem(key, repo_id, f"its tokenizer has no chat template (cached in {snapshot}), and r1exp's "
                          "prompts are chat messages", "use a model whose tokenizer has one (an -Instruct model), or "
                          "add a chat_template.jinja to a local copy and set model.name_or_path to it")
            return
        if hub.offline():
            yield Problem(key, repo_id, f"the hub is offline ({hub.offline()}) and the local Hugging Face cache "
                          f"({snapshot}) lacks {'; '.join(missing)}", "complete the cache: " + fix)
            return
    flag = hub.offline()
    where = f"the local Hugging Face cache ({hub.hub_cache()})"
    if flag:
        yield Problem(key, repo_id, f"the hub is offline ({flag}) and the model is not in {where}", fix)
        return
    answer = hub.ask(repo_id, "model")
    if answer.status == "unreachable":
        yield Problem(key, repo_id, f"the model is not in {where} and the hub cannot be reached ({answer.detail})",
                      fix)
    elif answer.status == "missing":
        yield Problem(key, repo_id, f"no such model on the hub, or a private one this machine has no access to "
                      f"({answer.detail})", "check the spelling (owner/name, as on huggingface.co), log in for a "
                      "private model (`hf auth login`), or use model.name_or_path=/path/to/a/local/copy")
    elif answer.gated and not hub.has_token():
        yield Problem(key, repo_id, "a gated model: downloading it needs a Hugging Face token with access, and none "
                      "is configured", f"accept its terms on https://huggingface.co/{repo_id}, then `hf auth login` "
                      "(or set HF_TOKEN); or use model.init=random for speed/memory work")
    elif answer.files:
        absent = [part for part, present in (
            ("config.json", "config.json" in answer.files),
            ("tokenizer files", any(f in answer.files for f in TOKENIZER_FILES)),
            ("weights", any(f.endswith(WEIGHT_SUFFIXES) for f in answer.files))) if not present]
        if absent:
            yield Problem(key, repo_id, f"the hub repository has no {', no '.join(absent)}: transformers cannot load "
                          "it", "use a transformers-format repository (one with config.json and *.safetensors)")


def random_init_ignores_a_path(ctx):
    """model.init=random builds weights from `arch` and never loads model.name_or_path's weights: a folder holding
    weights is a model the user meant to load. A folder with a config.json and no weights gives the shape."""
    cfg = ctx.cfg
    name = get(cfg, "model.name_or_path")
    if get(cfg, "model.init") != "random" or not isinstance(name, str) or not name.strip():
        return
    folder = Path(name).expanduser()
    if _exists(folder) and folder.is_dir() and _missing_weights(folder, {p.name for p in folder.iterdir()}):
        return   # a folder without weights: its config.json gives the shape to build (r1exp.models.architecture)
    if _exists(folder) or looks_like_a_path(name):
        yield Problem("model.name_or_path", name, "model.init=random builds random weights from model.arch and "
                      "ignores the weights in model.name_or_path, so this folder's weights would not be loaded",
                      "set model.init=pretrained to load it (with a model=<shape> whose arch matches it), or drop "
                      "the model.name_or_path override")


RULES: list[Rule] = [
    Rule("model.random_init_path", ("model.init", "model.name_or_path"), random_init_ignores_a_path,
         doc="model.init=random with a local path in model.name_or_path: the path would be ignored"),
    Rule("model.source", ("model.name_or_path", "model.init"), model_source, scope="machine",
         doc="the model is here: a complete local folder, or a hub id in the local cache (or on the hub when "
             "online, gated ones with a token); init=random needs none"),
]
