"""Checks of `tools` and `environment` before anything loads: rows of the rules table.

Without them a tool mistake surfaces after the model has loaded, or never: TRL builds each tool's JSON schema from its
docstring and annotations when the trainer is made (transformers' `get_json_schema` raises on a missing one), stops
on a chat template it cannot parse tool calls from, and silently drops a tool's result that does not fit
`max_completion_length`. Each row reads the config, the installed TRL's source (r1exp.tools.trl_support) and the chat
template the tokenizer will use (r1exp.tools.template). Importing a tool's `_target_` imports its module, as the
reward rows do for a reward's; transformers is imported (for `get_json_schema`) only when a tool is selected.
"""

from __future__ import annotations

import inspect

from omegaconf import OmegaConf
from packaging.version import InvalidVersion, Version

from r1exp.config.rule import Rule, get, is_number
from r1exp.errors import Problem
from r1exp.rewards.rules import import_target
from r1exp.tools.binding import (
    RESERVED,
    bind,
    environment_settings,
    run_limited,
    settings_of,
)
from r1exp.tools.template import (
    find_template,
    missing_parts,
    parser_name,
    renders_tools,
)
from r1exp.tools.trl_support import trl_tools

PROBE = "probe"   # a tool YAML's example arguments: the pre-flight calls the tool with them once
TOOL_KEYS = RESERVED
ENV_METHODS_NOT_TOOLS = ("reset", "get_reward")


def tool_entries(cfg) -> list[tuple[str, dict]]:
    node = OmegaConf.select(cfg, "tools", default=None)
    if not node or not OmegaConf.is_dict(node):
        return []
    return [(str(label), OmegaConf.to_container(entry, resolve=True)) for label, entry in node.items()
            if OmegaConf.is_dict(entry)]


def environment_entry(cfg) -> dict | None:
    node = OmegaConf.select(cfg, "environment", default=None)
    if not node or not OmegaConf.is_dict(node) or not node.get("_target_"):
        return None
    return OmegaConf.to_container(node, resolve=True)


def uses_tools(cfg) -> bool:
    return bool(tool_entries(cfg) or environment_entry(cfg))


def schema_problem(fn) -> str | None:
    """Why TRL cannot describe this callable to the model (transformers' get_json_schema, as TRL calls it)."""
    from transformers.utils.chat_template_utils import get_json_schema

    try:
        get_json_schema(fn)
    except Exception as e:  # noqa: BLE001 - DocstringParsingException, TypeHintParsingException, ValueError
        return str(e).strip().splitlines()[0]
    return None


def _schema_fix(label: str) -> str:
    return ("give the function a Google-style docstring (a summary line, then `Args:` with one line per argument) "
            f"and a type annotation on every argument the model fills; or bind it in conf/tools/{label}.yaml")


def bound_tools(cfg) -> list[tuple[str, dict, object]]:
    """(label, entry, the tool as TRL will call it) for each tool that imports (the import row reports the others)."""
    out = []
    for label, entry in tool_entries(cfg):
        fn, _why = import_target(entry.get("_target_")) if entry.get("_target_") else (None, None)
        limit = entry.get("time_limit_s")
        if fn is None or isinstance(fn, type) or (limit is not None and not (
                is_number(limit) and limit > 0)):
            continue
        settings = settings_of(entry)
        try:
            out.append((label, entry, bind(fn, settings, entry.get("time_limit_s"))))
        except (TypeError, ValueError):
            continue
    return out


def check_tools(ctx):
    names: dict[str, str] = {}
    for label, entry in tool_entries(ctx.cfg):
        key = f"tools.{label}._target_"
        target = entry.get("_target_")
        if not target:
            yield Problem(f"tools.{label}", None, "the tool names no `_target_` function",
                          f"set tools.{label}._target_ to a function, e.g. r1exp.tools.calculator.calculator")
            continue
        fn, why = import_target(target)
        if fn is None:
            yield Problem(key, target, f"cannot import the tool: {why}",
                          "point _target_ at an importable function (is its package on PYTHONPATH?)")
            continue
        if isinstance(fn, type):
            yield Problem(key, target, f"{target} is a class, not a function: TRL calls a tool as fn(**arguments)",
                          "point _target_ at a function (an environment's methods: environment=..., not tools)")
            continue
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        settings = settings_of(entry)
        unknown = [k for k in settings if k not in params and not takes_any]
        if unknown:
            yield Problem(f"tools.{label}.{unknown[0]}", settings[unknown[0]], f"{target} has no parameter "
                          f"{unknown[0]!r}: r1exp passes a tool's YAML keys (other than {', '.join(TOOL_KEYS)}) as "
                          "keyword arguments", f"drop it, or use one of {list(params) or 'its parameters'}")
            continue
        limit = entry.get("time_limit_s")
        if limit is not None and (not is_number(limit) or limit <= 0):
            yield Problem(f"tools.{label}.time_limit_s", limit, "not a positive number of seconds",
                          "set the seconds one call may take (e.g. 2.0), or null for no limit")
            continue
        tool = bind(fn, settings, limit)
        problem = schema_problem(tool)
        if problem:
            yield Problem(key, target, f"TRL cannot describe this tool to the model: {problem}", _schema_fix(label))
            continue
        name = getattr(fn, "__name__", label)
        if name in names:
            yield Problem(key, target, f"two tools are named {name!r} (also tools.{names[name]}): "
                          "TRL finds a tool by its function's name, so one would never be called",
                          "keep one of them, or give one function another name")
        names[name] = label


def check_environment(ctx):
    entry = environment_entry(ctx.cfg)
    if entry is None:
        return
    target = entry["_target_"]
    cls, why = import_target(target)
    if cls is None:
        yield Problem("environment._target_", target, f"cannot import the environment: {why}",
                      "point _target_ at an importable class")
        return
    if not isinstance(cls, type):
        return   # a factory function: TRL calls it; its methods are known only once it has made an environment
    if not callable(getattr(cls, "reset", None)):
        yield Problem("environment._target_", target, f"{target} has no `reset` method: TRL calls reset(**row) on "
                      "each environment before a rollout", "add a reset method (return None, or text appended to the "
                      "prompt)")
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepted = {}
    settings = environment_settings(entry)
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        for k, value in settings.items():
            if k not in accepted:
                yield Problem(f"environment.{k}", value, f"{target}() takes no argument {k!r}: r1exp makes each "
                              "environment with the YAML's keys", f"drop it, or use one of {list(accepted)}")
    methods = [name for name, member in inspect.getmembers(cls, inspect.isfunction)
               if not name.startswith("_") and name not in ENV_METHODS_NOT_TOOLS]
    if not methods:
        yield Problem("environment._target_", target, f"{target} has no public method: TRL exposes an environment's "
                      "methods as its tools, so the model could call nothing", "add a method per action, with a "
                      "docstring and annotated arguments")
    for name in methods:
        problem = schema_problem(_unbound(getattr(cls, name)))
        if problem:
            yield Problem("environment._target_", f"{target}.{name}", f"TRL cannot describe the method {name} to "
                          f"the model: {problem}", _schema_fix("<tool>").replace(
                              "; or bind it in conf/tools/<tool>.yaml", "; or make it private (_name)"))


def _unbound(method):
    """A method as TRL sees it on an instance: without `self` in the signature."""
    import functools

    def call(*args, **kwargs):
        return method(None, *args, **kwargs)

    functools.update_wrapper(call, method)
    del call.__wrapped__
    sig = inspect.signature(method)
    call.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    return call


def check_trl_support(ctx):
    used = [f for f, on in (("tools", bool(tool_entries(ctx.cfg))),
                            ("environment_factory", environment_entry(ctx.cfg) is not None)) if on]
    if not used:
        return
    support = trl_tools()
    key = "tools" if "tools" in used else "environment"
    if support.version is None:
        return   # the installed-packages row reports a missing TRL
    if not support.known():
        yield Problem(key, None, f"could not read TRL {support.version}'s GRPOTrainer to see whether it takes tools",
                      "check that TRL >= 1.0 is installed; TRL itself reports it when the trainer is built",
                      severity="warning")
        return
    for feature in used:
        if feature not in support.accepts:
            yield Problem(key, None, f"the installed TRL {support.version}'s GRPOTrainer takes no `{feature}`",
                          'upgrade TRL: pip install "trl>=1.16" (python -m r1exp.versions shows the stack)')
            continue
        floor = support.needs.get(feature)
        installed = ctx.env.versions.get("transformers")
        if floor and installed and _older(installed, floor):
            yield Problem(key, installed, f"TRL {support.version} needs transformers >= {floor} for `{feature}` "
                          f"(it raises ImportError when the trainer is built); transformers {installed} is installed",
                          f'pip install "transformers>={floor}"')


def check_template(ctx):
    """The chat template renders a whole tool exchange, and TRL can parse the model's tool calls out of it."""
    if not uses_tools(ctx.cfg):
        return
    template = find_template(ctx.cfg)
    key = "model.chat_template"
    if template is None:
        yield Problem(key, None, "the model's chat template is not readable here (the model is not in a local "
                      "folder or the HF cache): whether it renders tool calls is checked by TRL when the trainer is "
                      "built, after the model has loaded", "download the model first (huggingface-cli download "
                      "<id>), or set model.chat_template", severity="warning")
        return
    missing = missing_parts(template.text)
    if isinstance(missing, str):
        yield Problem(key, template.where, f"the chat template does not render a tool exchange: {missing}",
                      _template_fix(ctx))
        return
    if missing:
        yield Problem(key, template.where, f"the chat template leaves out {' and '.join(missing)} when it renders a "
                      "tool exchange: TRL refuses it once the model has loaded ('The provided chat template does not "
                      "support tool calling')", _template_fix(ctx))
        return
    support = trl_tools()
    if template.parses_tool_calls or not support.parsed_templates:
        return
    if parser_name(template, support.parsed_templates) is None:
        yield Problem(key, template.where, "TRL has no parser for this chat template's tool calls (TRL stops with "
                      "'Unrecognized chat template, failed to add response schema' once the model has loaded), and "
                      "the tokenizer carries no response_template of its own", _template_fix(ctx))


FAMILIAR = ("qwen2_5", "qwen3", "llama3_1", "llama3_2", "gptoss", "gemma4")


def _template_fix(ctx) -> str:
    known = trl_tools().parsed_templates
    names = [n for n in FAMILIAR if n in known] + sorted(n for n in known if n not in FAMILIAR)
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (f"use a chat template TRL parses tool calls from (those of {shown or 'Qwen2.5, Qwen3, Llama 3.1'}; "
            "model.chat_template=<file.jinja>), or give the tokenizer a response_template (transformers' response "
            "parsing)")


def describe(cfg) -> str | None:
    """The dry run's `tools` row: each tool, the environment, and the chat template TRL will render them with."""
    tools = [f"{label} ({entry.get('_target_')}, {entry['time_limit_s']:g} s a call)" if entry.get("time_limit_s")
             else f"{label} ({entry.get('_target_')})" for label, entry in tool_entries(cfg)]
    env = environment_entry(cfg)
    if env is not None:
        tools.append(f"environment {env['_target_']}")
    if not tools:
        return None
    template = find_template(cfg)
    if template is None:
        where = "chat template: not readable here (TRL checks it when the trainer is built)"
    else:
        name = parser_name(template, trl_tools().parsed_templates)
        parsed = ("the tokenizer's own parser" if template.parses_tool_calls else
                  f"TRL's {name} parser" if name else "no parser")
        where = f"chat template from {template.where}, tool calls read by {parsed}"
    iterations = get(cfg, "trainer.max_tool_calling_iterations")
    rounds = f"; at most {iterations} tool round{'s' if iterations != 1 else ''}" if iterations else ""
    return f"{', '.join(tools)}; {where}{rounds}"


def tool_round_tokens(cfg) -> int | None:
    """Tokens one tool round adds to a completion (the call, the tool's turn, the next assistant header), rendered
    with the run's template and tools; None when the template is not known here."""
    template = find_template(cfg)
    tools = bound_tools(cfg)
    if template is None or not tools:
        return None
    from transformers.utils.chat_template_utils import get_json_schema

    _label, entry, tool = tools[0]
    schema = get_json_schema(tool)
    args = entry.get(PROBE) or {p: "1 + 2" for p in schema["function"]["parameters"]["properties"]}
    call = [{"type": "function", "function": {"name": schema["function"]["name"], "arguments": args}}]
    base = [{"role": "user", "content": "Q"}]
    turn = [*base, {"role": "assistant", "content": "", "tool_calls": call},
            {"role": "tool", "name": schema["function"]["name"], "content": "12345"}]
    from r1exp.tools.template import render

    try:
        before = render(template.text, base, add_generation_prompt=True)
        after = render(template.text, turn, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - the template row reports a template that does not render
        return None
    return added_tokens(cfg, before, after)


def added_tokens(cfg, before: str, after: str) -> int:
    """Tokens `after` has beyond `before`: counted with the run's tokenizer when it is on disk, else estimated from
    characters as the prompt lengths are (r1exp.data.prompts)."""
    from r1exp.models.tokens import chars_per_token
    from r1exp.tools.template import token_counter

    count = token_counter(cfg)
    if count is not None:
        return max(0, count(after) - count(before))
    return max(0, int((len(after) - len(before)) / chars_per_token(cfg)))


def tool_prompt_tokens(cfg) -> int:
    """Tokens the tools' descriptions add to every prompt (TRL renders them into the system turn): the tools' and the
    environment's methods', plus the text the environment's reset() appends to the question (made with the YAML's
    settings and reset with a row of the data, as TRL does before each rollout)."""
    template = find_template(cfg)
    tools = [tool for _label, _entry, tool in bound_tools(cfg)] + environment_methods(cfg)
    if template is None or not tools:
        return 0
    from transformers.utils.chat_template_utils import get_json_schema

    try:
        schemas = [get_json_schema(tool) for tool in tools]
    except Exception:  # noqa: BLE001 - the tools row reports it
        return 0
    with_tools, without = renders_tools(template.text, schemas), renders_tools(template.text, [])
    if with_tools is None or without is None:
        return 0
    return added_tokens(cfg, without, with_tools) + added_tokens(cfg, "", reset_text(cfg))


def environment_methods(cfg) -> list:
    """The environment's public methods as TRL exposes them (without `self`), [] when there is none or its class
    cannot be read here (its own row reports that)."""
    entry = environment_entry(cfg)
    cls = import_target(entry["_target_"])[0] if entry else None
    if not isinstance(cls, type):
        return []
    methods = [_unbound(member) for name, member in inspect.getmembers(cls, inspect.isfunction)
               if not name.startswith("_") and name not in ENV_METHODS_NOT_TOOLS]
    return [method for method in methods if schema_problem(method) is None]


def reset_text(cfg) -> str:
    """What the environment's reset() returns for the data's first row ("" when it cannot be made here)."""
    entry = environment_entry(cfg)
    cls = import_target(entry["_target_"])[0] if entry else None
    if cls is None:
        return ""
    from r1exp import data

    try:
        env = cls(**environment_settings(entry))
        row = data.examples(cfg.data, n=1)[0]
        text = env.reset(question=row.question, answer=row.answer)
    except Exception:  # noqa: BLE001 - the user's class: its rows and TRL report what fails
        return ""
    return text if isinstance(text, str) else ""


def check_tool_round_fits(ctx):
    """A tool round must fit max_completion_length: TRL drops a result that would not, silently, and the completion
    ends at the call."""
    if not tool_entries(ctx.cfg):
        return
    added = tool_round_tokens(ctx.cfg)
    budget = get(ctx.cfg, "trainer.max_completion_length")
    if added is None or not is_number(budget):
        return
    tokens = added + 8   # an answer after the tool's result
    if tokens >= budget:
        yield Problem("trainer.max_completion_length", budget, f"one tool round (the call, the tool's turn, the next "
                      f"assistant header: ~{tokens} tokens with this template) does not fit: TRL drops every tool "
                      "result that would pass max_completion_length, so the model never sees one",
                      f"raise trainer.max_completion_length above {tokens} plus the answer's length")


def check_probe(ctx):
    """Call each tool once with its `probe` arguments (when its YAML gives some), with its time limit: a tool that
    raises or hangs is named now, not in the middle of training."""
    for label, entry, tool in bound_tools(ctx.cfg):
        args = entry.get(PROBE)
        if not args:
            continue
        if not isinstance(args, dict):
            yield Problem(f"tools.{label}.{PROBE}", args, "not a mapping of argument -> value",
                          f"e.g. tools.{label}.probe={{expression: '1 + 2'}}")
            continue
        limit = entry.get("time_limit_s")
        limit = float(limit) if is_number(limit) and limit > 0 else 10.0
        try:
            run_limited(tool, (), dict(args), limit, label)
        except TimeoutError:
            yield Problem(f"tools.{label}", entry.get("_target_"), f"the tool did not answer its probe {args} in "
                          f"{limit:g} s", f"fix the tool, or raise tools.{label}.time_limit_s")
        except Exception as e:  # noqa: BLE001 - the user's tool: any failure is the message
            yield Problem(f"tools.{label}", entry.get("_target_"), f"the tool raised on its probe {args}: "
                          f"{type(e).__name__}: {e}", f"fix the tool, or its probe (tools.{label}.probe)")


def _older(installed: str, floor: str) -> bool:
    try:
        return Version(installed) < Version(floor)
    except InvalidVersion:
        return False


RULES: list[Rule] = [
    Rule("tools.target", ("tools.*._target_", "tools.*.time_limit_s"), check_tools,
         doc="each tool imports, takes its YAML's keys, and has the docstring and annotations TRL describes it by"),
    Rule("tools.environment", ("environment._target_",), check_environment,
         doc="the environment imports, has reset(), takes its YAML's keys, and its methods are describable tools"),
    Rule("tools.trl", ("tools", "environment"), check_trl_support, scope="machine",
         doc="the installed TRL takes tools / environment_factory, with the transformers it requires for them"),
    Rule("tools.chat_template", ("model.chat_template", "model.name_or_path", "tools"), check_template,
         doc="the chat template renders a tool exchange and TRL can parse its tool calls"),
    Rule("tools.fit", ("trainer.max_completion_length", "tools"), check_tool_round_fits,
         doc="one tool round fits max_completion_length (TRL drops results that do not)"),
    Rule("tools.probe", ("tools.*.probe",), check_probe,
         doc="each tool with probe arguments answers them within its time limit"),
]
