"""The model's rows of the rules table: what is checked against the architecture and the tokenizer before loading.

- `model.lora.target_modules`: the modules LoRA wraps exist in this architecture (its linear layers, read from its
  config.json through r1exp/models/families.py). PEFT refuses a list of which nothing matches ("Target modules ...
  not found in the base model") after the model has loaded; a list of which only part matches trains less than
  asked, silently.
- `model.chat_template`: a template given in place of the tokenizer's renders a conversation the way transformers
  renders it (a sandboxed Jinja environment), with the system prompt and the question in its output.
"""

from __future__ import annotations

from pathlib import Path

from r1exp.config.rule import Rule, get
from r1exp.errors import Problem
from r1exp.models.architecture import target_module_names, targeted


def lora_modules(ctx):
    cfg = ctx.cfg
    if ctx.loader is not None and not ctx.loader.trains_adapter:
        return
    arch, wanted = get(cfg, "model.arch"), get(cfg, "model.lora.target_modules")
    if arch is None or wanted is None or not (arch.get("modules") or arch.get("family")):
        return
    known = target_module_names(arch)
    if isinstance(wanted, str):
        if wanted != "all-linear" and not targeted(arch, wanted):
            yield Problem("model.lora.target_modules", wanted, f"the pattern matches none of this model's modules "
                          f"({', '.join(sorted(known))})", "use \"all-linear\" or module names",
                          severity="warning")
        return
    names = [str(n) for n in wanted]
    absent = [n for n in names if n not in known]
    if not absent:
        return
    family = arch.get("family")
    fix = (f"use module names of {family} ({', '.join(sorted(known - {'lm_head', 'embed_tokens'}))}) or "
           "model.lora.target_modules=all-linear")
    if len(absent) == len(names):
        yield Problem("model.lora.target_modules", names, f"none of these modules exists in a {family} model: PEFT "
                      "stops with 'Target modules not found in the base model' after the model has loaded", fix)
    else:
        yield Problem("model.lora.target_modules", names, f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'}"
                      f" not a module of a {family} model: LoRA wraps only the others", fix, severity="warning")


def chat_template_renders(ctx):
    template = get(ctx.cfg, "model.chat_template")
    if not template:
        return
    text = str(template)
    key = "model.chat_template"
    if "{" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            yield Problem(key, text, "neither a Jinja template (no '{{' or '{%') nor a file that exists",
                          "give the template itself, or the path of a .jinja file holding it")
            return
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            yield Problem(key, str(path), f"cannot read it: {e}", "give a readable text file")
            return
    question, system = "What is 2 + 3?", str(get(ctx.cfg, "data.system_prompt") or "Answer briefly.")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    try:
        rendered = render_chat(text, messages)
    except Exception as e:  # noqa: BLE001 - jinja2's syntax and runtime errors, and raise_exception() in a template
        yield Problem(key, _short(text), f"the template does not render a conversation: {type(e).__name__}: {e}",
                      "fix the template (transformers renders it with messages, add_generation_prompt=True, "
                      "bos_token, eos_token)")
        return
    if question not in rendered:
        yield Problem(key, _short(text), "the rendered conversation does not contain the user's question: the model "
                      "would be prompted without it", "render each message's content (see the tokenizer's own "
                      "template for the usual loop over messages)")


def render_chat(template: str, messages: list, tools: list | None = None) -> str:
    """A chat template rendered the way transformers does (sandboxed Jinja, trim_blocks, lstrip_blocks,
    raise_exception and strftime_now), with add_generation_prompt=True."""
    from datetime import datetime

    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: __import__("json").dumps(
        x, indent=indent, ensure_ascii=ensure_ascii)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, bos_token="<s>",
                                            eos_token="</s>", tools=tools, documents=None)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


RULES: list[Rule] = [
    Rule("model.lora.target_modules", ("model.lora.target_modules", "model.arch"), lora_modules,
         doc="LoRA's target_modules name modules this architecture has (all-linear, names, a pattern)"),
    Rule("model.chat_template", ("model.chat_template",), chat_template_renders,
         doc="a chat template given in place of the tokenizer's renders the system prompt and the question"),
]
