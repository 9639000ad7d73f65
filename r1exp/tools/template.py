"""The chat template a run's tokenizer will use, found without loading the tokenizer, and what it does with tools.

Where it comes from, first found wins: `model.chat_template` (the template, or a file holding it); the model's folder
(a local folder or its HF-cache snapshot: `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`,
whose `tool_use` variant transformers picks when tools are passed); a model built locally (init=random: the
recipe's own template, r1exp.models.tiny). None when the model is only on the hub: TRL then checks it when the
trainer is built, and the dry run says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from r1exp.config.rule import get
from r1exp.machine import hub

# Sentinels, as TRL's own check uses: a template must render every part of a tool exchange.
NAME, ARG_KEY, ARG_VALUE, CONTENT = "tool_name_r1", "arg_key_r1", "arg_value_r1", "tool_result_r1"


@dataclass(frozen=True)
class Template:
    text: str
    where: str                         # model.chat_template | a file path | "the locally built model"
    parses_tool_calls: bool = False    # the tokenizer itself carries a response_template / response_schema


def find_template(cfg) -> Template | None:
    given = get(cfg, "model.chat_template")
    if given:
        text = str(given)
        if "{" not in text:
            try:
                return Template(Path(text).expanduser().read_text(), text)
            except (OSError, UnicodeDecodeError):
                return None   # model.chat_template's own rule reports it
        return Template(text, "model.chat_template")
    if get(cfg, "model.init") == "random":
        from r1exp.models import tiny

        return Template(tiny.chat_template_for(cfg.model), "the locally built model (r1exp.models.tiny)")
    return _from_folder(str(get(cfg, "model.name_or_path") or ""))


def _from_folder(name: str) -> Template | None:
    folder = Path(name).expanduser()
    try:
        if not folder.is_dir():
            folder = hub.cached_snapshot(name) if hub.is_repo_id(name) else None
    except (OSError, ValueError):
        return None
    if folder is None:
        return None
    try:
        tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        tok_config = {}
    parses = bool(tok_config.get("response_template") or tok_config.get("response_schema"))
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            return Template(jinja.read_text(), str(jinja), parses)
        except (OSError, UnicodeDecodeError):
            return None
    template = tok_config.get("chat_template")
    if isinstance(template, list):   # named variants: transformers takes `tool_use` when tools are passed
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("tool_use") or named.get("default")
    if isinstance(template, str) and template:
        return Template(template, str(folder / "tokenizer_config.json"), parses)
    return None


def tool_exchange() -> list[dict]:
    calls = [{"type": "function", "function": {"name": NAME, "arguments": {ARG_KEY: ARG_VALUE}}}]
    return [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "name": NAME, "content": CONTENT}]


def render(text: str, messages: list, tools: list | None = None, add_generation_prompt: bool = False) -> str:
    """A conversation rendered by transformers' own renderer (its Jinja extensions, e.g. `{% generation %}`), as
    `apply_chat_template(..., tokenize=False)` renders it."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], tools=tools or None, chat_template=text,
                                       add_generation_prompt=add_generation_prompt, bos_token="<s>", eos_token="</s>")
    return rendered[0]


def missing_parts(text: str) -> list[str] | str:
    """What of a tool exchange the template leaves out ([] = it renders all of it), or why it does not render. The
    same test as TRL's `supports_tool_calling`, including its second try with the arguments as a JSON string (a
    template that concatenates them, as DeepSeek-V3's does)."""
    messages = tool_exchange()
    try:
        try:
            rendered = render(text, messages)
        except TypeError:
            messages[1]["tool_calls"][0]["function"]["arguments"] = f'{{"{ARG_KEY}": "{ARG_VALUE}"}}'
            rendered = render(text, messages)
    except Exception as e:  # noqa: BLE001 - jinja2's errors, raise_exception() in a template, a template's bugs
        return f"{type(e).__name__}: {e}"
    parts = {"the tool call's name": NAME, "its arguments": ARG_VALUE, "the tool's result": CONTENT}
    return [label for label, sentinel in parts.items() if sentinel not in rendered]


def renders_tools(text: str, schemas: list[dict]) -> str | None:
    """The prompt as the model will see it with these tools, or None when the template does not render them."""
    try:
        return render(text, [{"role": "user", "content": "Q"}], tools=schemas, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - jinja2's errors, raise_exception() in a template, a template's own bugs
        return None


def parser_name(template: Template, parsed_templates: dict) -> str | None:
    """TRL's name for the template whose tool calls it will parse (None: TRL has no parser for it)."""
    for name, text in parsed_templates.items():
        if text == template.text:
            return name
    return None


def tokenizer_file(cfg) -> Path | None:
    """The tokenizer.json the run will load, when it is on disk already (a local folder, the HF cache, a locally
    built model in the cache or shipped with r1exp); None otherwise."""
    if get(cfg, "model.init") == "random":
        from r1exp.models import tiny

        built = tiny.cache_root() / "models" / tiny.folder_name(cfg.model, cfg.data)
        folders = [built, tiny.shipped_folder(cfg.model, cfg.data)]
    else:
        name = str(get(cfg, "model.name_or_path") or "")
        try:
            local = Path(name).expanduser()
            folders = [local if local.is_dir() else (hub.cached_snapshot(name) if hub.is_repo_id(name) else None)]
        except (OSError, ValueError):
            return None
    for folder in folders:
        if folder is not None and (folder / "tokenizer.json").is_file():
            return folder / "tokenizer.json"
    return None


def token_counter(cfg):
    """A function text -> tokens with the run's own tokenizer: its tokenizer.json on disk (the `tokenizers` library:
    no transformers, no model), a locally built model's recipe tokenizer (r1exp.models.tiny) before it is built; else
    None (the model is only on the hub)."""
    path = tokenizer_file(cfg)
    if path is None and get(cfg, "model.init") == "random":   # a model built locally, not built yet
        from r1exp.models import tiny

        try:
            tokenizer = tiny.recipe_tokenizer(cfg.model, cfg.data)
        except Exception:  # noqa: BLE001 - a recipe that cannot build: its own rows report it; estimate instead
            return None
        return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    if path is None:
        return None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
    except Exception:  # noqa: BLE001 - a tokenizer the library cannot read: estimate from characters instead
        return None
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
