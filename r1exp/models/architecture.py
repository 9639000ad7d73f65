"""A model's architecture, read from its own config.json: what the memory plan and the module checks need.

Where the config comes from (`find_config`): a local folder, the Hugging Face cache, or the hub when it may be asked
(a short download of config.json alone). What it says (`arch_of`) is read through the family table
(r1exp/models/families.py): parameters counted layer by layer (mixture-of-experts by total and active), the linear
modules LoRA can target, the KV-cache shape, the longest context. transformers itself is not imported: a dry run
stays a second long; tests/test_architecture.py holds every count against transformers' own model built on the
meta device.

In the config, `model.arch` holds these numbers: read from config.json when the model is found, or from the YAML
(a preset plans a model that is not downloaded). A YAML arch that disagrees with the real config is an error
naming the field (`arch_disagreements`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from r1exp.machine import hub
from r1exp.models.families import FAMILIES, Family

# the fields a YAML arch and the real config are compared on (params within PARAMS_TOLERANCE)
SHAPE_FIELDS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "tie_embeddings",
                "max_position")
PARAMS_TOLERANCE = 0.02
DOWNLOAD_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class FoundConfig:
    config: dict
    where: str            # the config.json read: a path, or "hub:<id>"


_FOUND: dict = {}


def find_config(name_or_path: str, ask_hub: bool = True) -> FoundConfig | None:
    """The model's config.json as a dict: a local folder, the HF cache, the hub (when it may be asked and `ask_hub`),
    else None."""
    key = (name_or_path, ask_hub)
    if key not in _FOUND:
        _FOUND[key] = _find(name_or_path, ask_hub)
    return _FOUND[key]


def _find(name: str, ask_hub: bool) -> FoundConfig | None:
    local = Path(name).expanduser()
    try:
        candidates = [local / "config.json"] if local.is_dir() else []
        exists = local.exists()
    except (OSError, ValueError):   # a name no file system holds (the schema's rows report it)
        return None
    if not candidates and hub.is_repo_id(name):
        snapshot = hub.cached_snapshot(name)
        if snapshot is not None:
            candidates.append(snapshot / "config.json")
    for path in candidates:
        config = _read(path)
        if config is not None:
            return FoundConfig(config, str(path))
    if not ask_hub or exists or not hub.is_repo_id(name) or hub.offline():
        return None
    return _download(name)


def _read(path: Path) -> dict | None:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _download(repo_id: str) -> FoundConfig | None:
    """config.json from the hub (a few kB), waiting at most DOWNLOAD_TIMEOUT_S; None when the hub does not answer."""
    box: dict = {}

    def call():
        if hub.reachable(DOWNLOAD_TIMEOUT_S):
            return
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(repo_id, "config.json", etag_timeout=DOWNLOAD_TIMEOUT_S)
            box["found"] = FoundConfig(_read(Path(path)) or {}, f"hub:{repo_id}")
        except Exception:  # noqa: BLE001 - gated, missing, a proxy: the model source check says which
            return

    worker = threading.Thread(target=call, daemon=True, name="r1exp-config-download")
    worker.start()
    worker.join(2 * DOWNLOAD_TIMEOUT_S + 1.0)
    found = box.get("found")
    return found if found is not None and found.config else None


class UnknownArchitecture(ValueError):
    """A config.json whose model_type the family table does not describe."""


def text_config(config: dict) -> dict:
    """The language model's part of a config (a vision-language model nests it under text_config)."""
    inner = config.get("text_config")
    if isinstance(inner, dict) and inner.get("hidden_size"):
        merged = {k: v for k, v in config.items() if k not in ("text_config", "vision_config")}
        return {**merged, **inner, "model_type": inner.get("model_type") or config.get("model_type")}
    return config


def family_of(config: dict) -> tuple[str, Family]:
    model_type = str(text_config(config).get("model_type") or "")
    family = FAMILIES.get(model_type)
    if family is None:
        raise UnknownArchitecture(model_type or "(no model_type)")
    return model_type, family


def arch_of(config: dict) -> dict:
    """model.arch's numbers from a config.json (raises UnknownArchitecture for a family the table lacks)."""
    name, family = family_of(config)
    text = {**dict(family.defaults), **text_config(config)}
    h, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
    kv = int(text.get("num_key_value_heads") or heads)
    hd = int(text.get("head_dim") or h // heads)
    tie = text.get("tie_word_embeddings", config.get("tie_word_embeddings", family.tie_default))
    shape = family.shape(text, h=h, heads=heads, kv=kv, hd=hd)
    outer = FAMILIES.get(str(config.get("model_type")), family)   # a vision-language model's own row counts its tower
    vision = outer.vision_params(config.get("vision_config"), h) if config.get("vision_config") else 0
    vocab = int(text["vocab_size"])
    embedding = vocab * h
    total = shape.total + embedding + (0 if tie else embedding) + vision
    active = shape.active + embedding + (0 if tie else embedding) + vision
    arch = {"family": name, "params": float(total), "layers": int(text["num_hidden_layers"]), "hidden": h,
            "heads": heads, "kv_heads": kv, "head_dim": hd, "intermediate": shape.active_intermediate,
            "vocab": vocab, "tie_embeddings": bool(tie),
            "max_position": int(text.get("max_position_embeddings") or family.max_position_default),
            "modules": sorted(shape.linear_modules | (outer.vision_modules() if vision else frozenset()))}
    if shape.experts:
        arch.update(active_params=float(active), experts=shape.experts, experts_per_token=shape.experts_per_token)
    return arch


_COUNTED: dict = {}


def arch_from_transformers(config: dict) -> dict | None:
    key = repr(sorted(config.items(), key=lambda kv: kv[0]))
    if key not in _COUNTED:
        _COUNTED[key] = _instantiated_arch(config)
    return _COUNTED[key]


def _instantiated_arch(config: dict) -> dict | None:
    """model.arch of a family the table lacks, from transformers' own model built on the meta device (no memory; a
    few seconds, as it imports torch): exact parameters and linear modules, the shape fields from its config class.
    None when transformers does not know the model_type."""
    try:
        import torch
        import transformers

        text = text_config(config)
        conf = transformers.AutoConfig.for_model(str(config.get("model_type")),
                                                 **{k: v for k, v in config.items() if k != "model_type"})
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(conf)
    except Exception:  # noqa: BLE001 - an unknown model_type, a config transformers refuses, no causal-LM class
        return None
    tc = conf.get_text_config() if hasattr(conf, "get_text_config") else conf
    h, heads = int(tc.hidden_size), int(tc.num_attention_heads)
    kv = int(getattr(tc, "num_key_value_heads", None) or heads)
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    return {"family": str(text.get("model_type") or config.get("model_type")),
            "params": float(sum(p.numel() for p in model.parameters())), "layers": int(tc.num_hidden_layers),
            "hidden": h, "heads": heads, "kv_heads": kv, "head_dim": int(getattr(tc, "head_dim", None) or h // heads),
            "intermediate": int(getattr(tc, "intermediate_size", None) or 4 * h), "vocab": int(tc.vocab_size),
            "tie_embeddings": bool(getattr(conf, "tie_word_embeddings", False)),
            "max_position": int(getattr(tc, "max_position_embeddings", None) or 2048),
            "modules": sorted(linear - {"lm_head"})}


def arch_disagreements(yaml_arch: dict, real: dict) -> list[tuple[str, object, object]]:
    """(field, YAML value, real value) for every field of a YAML arch that the model's own config contradicts."""
    out = []
    for key in SHAPE_FIELDS:
        mine = yaml_arch.get(key)
        if mine is None and key == "head_dim":
            mine = int(yaml_arch["hidden"]) // int(yaml_arch["heads"])
        if mine is not None and real.get(key) is not None and _differs(mine, real[key]):
            out.append((key, mine, real[key]))
    params = yaml_arch.get("params")
    if params and abs(float(params) - real["params"]) > PARAMS_TOLERANCE * real["params"]:
        out.append(("params", params, real["params"]))
    return out


def _differs(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) != bool(b)
    return int(a) != int(b)


def target_module_names(arch) -> set:
    """Names LoRA's target_modules may use on this architecture: its linear layers (and lm_head, embed_tokens)."""
    modules = arch.get("modules") if hasattr(arch, "get") else None
    if modules:
        return {*modules, "lm_head", "embed_tokens"}
    family = FAMILIES.get(str(arch.get("family")))
    return {*(family.dense_modules if family else ()), "lm_head", "embed_tokens"}


def lora_shapes(arch) -> dict:
    """name -> (in, out, per layer count) of the linear modules LoRA can target, from model.arch."""
    h, heads, kv = int(arch["hidden"]), int(arch["heads"]), int(arch["kv_heads"])
    hd = int(arch.get("head_dim") or h // heads)
    inter = int(arch["intermediate"])
    return {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (heads * hd, h),
            "qkv_proj": (h, (heads + 2 * kv) * hd), "gate_proj": (h, inter), "up_proj": (h, inter),
            "gate_up_proj": (h, 2 * inter), "down_proj": (inter, h)}


def targeted(arch, target_modules) -> list[str]:
    """The module names a LoRA config's target_modules picks on this architecture (PEFT's rules: a list matches
    names, "all-linear" every linear layer but the output head)."""
    names = target_module_names(arch) - {"embed_tokens"}
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            return sorted(names - {"lm_head"})
        import re

        return sorted(n for n in names if re.fullmatch(target_modules, n) or re.search(target_modules, n))
    return sorted(n for n in names if n in set(target_modules))


def _not_found(name: str) -> str:
    """Why no config.json of `name` was found, in the words of where it was looked for."""
    local = Path(name).expanduser()
    try:
        if local.is_dir():
            return f"the folder {local} has no readable config.json"
        if local.exists():
            return f"{local} is a file, not a model folder"
    except (OSError, ValueError) as e:   # a name too long for the file system, a NUL byte
        return f"it cannot be looked up ({getattr(e, 'strerror', None) or e})"
    if not hub.is_repo_id(name) or name.startswith(("/", ".", "~")):
        return f"no such folder (looked at {local.absolute()})"
    where = f"it is not in the Hugging Face cache ({hub.hub_cache()})"
    return f"{where} and the hub is offline ({hub.offline()})" if hub.offline() else \
        f"{where} and the hub did not give its config.json"


def fill_arch(cfg) -> list:
    """Complete `model.arch` from the model's own config.json, in place (the pre-flight's first step), and return the
    problems: a YAML arch the real config contradicts, or no architecture at all. A model built locally
    (init=random) and a family the table lacks keep the YAML arch."""
    from omegaconf import OmegaConf, open_dict

    from r1exp.config.schema import fits_a_file_system
    from r1exp.errors import Problem

    model = cfg.get("model")
    if model is None:
        return []  # the schema's rows report it
    yaml_arch = OmegaConf.to_container(model.arch, resolve=True) if model.get("arch") is not None else None
    if OmegaConf.is_missing(model, "name_or_path"):
        return [] if yaml_arch is not None else [Problem(
            "model.name_or_path", "???", "model=pretrained names its model by model.name_or_path, and none is given",
            "add model.name_or_path=<hub id or local folder>, e.g. model.name_or_path=Qwen/Qwen3-8B",
            rule="model.arch")]
    name = OmegaConf.select(cfg, "model.name_or_path", default=None)
    if not isinstance(name, str) or not name.strip() or not fits_a_file_system(name):
        return []  # the schema's rows report it
    built_here = OmegaConf.select(cfg, "model.init", default=None) == "random"
    found = find_config(name, ask_hub=not built_here)
    if found is None:
        if yaml_arch is None:
            return [Problem("model.arch", "(none)", f"the plan needs {name}'s architecture: {_not_found(name)}",
                            f"download it (`hf download {name}`) or its config alone (`hf download {name} "
                            "config.json`), or point model.name_or_path at a local copy, or choose a model=<preset> "
                            "that describes its shape (conf/model/)", rule="model.arch")]
        return []
    try:
        real = arch_of(found.config)
    except UnknownArchitecture as e:
        real = arch_from_transformers(found.config)   # a family the table lacks: transformers builds it on meta
        if real is None and yaml_arch is not None:
            return []
        if real is None:
            return [Problem("model.arch", str(e), f"{found.where} is a {e} model, which neither r1exp's family table "
                            "nor the installed transformers knows", "give its shape in model.arch (layers, hidden, "
                            "heads, kv_heads, intermediate, vocab, params, max_position: see conf/model/qwen7b.yaml), "
                            "or upgrade transformers", rule="model.arch")]
    except (KeyError, TypeError, ValueError) as e:
        return [Problem("model.arch", found.where, f"its config.json lacks or mistypes {e}", "use a complete "
                        "config.json (the one transformers saved with the model)", rule="model.arch")]
    problems = []
    if yaml_arch is not None:
        for key, mine, theirs in arch_disagreements(yaml_arch, real):
            problems.append(Problem(f"model.arch.{key}", mine, f"{found.where} says {theirs}: the YAML arch describes "
                                    "another model", f"drop the YAML arch (model=pretrained reads the real one) or "
                                    f"set model.arch.{key}={theirs}", rule="model.arch"))
    if not problems:
        with open_dict(model):
            model.arch = {**real, "source": found.where}
    return problems
