"""The fields of the installed `trl.GRPOConfig` (names, accepted types, defaults, enum choices, deprecations) and
the checks TRL makes of their values (its warnings and errors), read without importing TRL.

Importing trl imports torch and takes seconds; a check must take about one. So the source files of the dataclass
chain (transformers' TrainingArguments -> TRL's _BaseConfig -> GRPOConfig) are parsed with `ast`, located with
`importlib.util.find_spec`, which finds a top-level package without importing it. Where TRL or transformers is not
installed (planning a GPU run on a laptop), the table cached from the last parse is used instead:
`trl_fields.json`, rewritten with `python -m r1exp.grpo.fields`.

What TRL accepts for a string field is read from where TRL decides it (r1exp.grpo.source): the `if/elif ... else:
raise` chains of grpo_config.py and grpo_trainer.py that compare the field with literals (loss_type,
importance_sampling_level, scale_rewards, vllm_importance_sampling_mode, multi_objective_aggregation), else the
field's help text ("Must be one of ..."), else transformers' string enums (lr_scheduler_type, optim, ...). A
deprecated field is one whose help says "Deprecated" or that GRPOConfig.__post_init__ warns about; TRL's other
warnings and errors about field values (GRPOConfig.__post_init__, GRPOTrainer.__init__) are kept as conditions.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

CACHE = Path(__file__).with_name("trl_fields.json")
# The dataclass chain of GRPOConfig, base first; a file an older TRL lacks is skipped.
CHAIN = (("transformers", "training_args.py", "TrainingArguments"),
         ("trl", "trainer/base_config.py", "_BaseConfig"),
         ("trl", "trainer/grpo_config.py", "GRPOConfig"))
# TRL's files that validate field values, and the functions whose warnings/errors about them r1exp repeats early.
TRL_VALIDATION = (("trl", "trainer/base_config.py", None), ("trl", "trainer/grpo_config.py", "__post_init__"),
                  ("trl", "trainer/grpo_trainer.py", "__init__"))
# Where the string enums used as annotations (SchedulerType, IntervalStrategy, OptimizerNames ...) are defined.
ENUM_FILES = (("transformers", "trainer_utils.py"), ("transformers", "training_args.py"))
# TRL's chunked log-prob head (no batch x sequence x vocab logits in memory): the memory plan needs to know.
FUSED_HEAD = ("trl", "trainer/utils.py", "def add_fused_lm_head(")
SIMPLE_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "dict": "dict", "Dict": "dict",
                "list": "list", "List": "list", "tuple": "list", "Any": "any"}
MISSING = "<no default>"


@dataclass(frozen=True)
class TrainerField:
    name: str
    types: tuple                 # among bool, int, float, str, dict, list, none, any
    default: object = MISSING
    choices: tuple = ()          # allowed strings, for a field typed by a string enum
    deprecated: str = ""         # TRL's deprecation message, for a deprecated field
    replacement: str = ""        # the field that replaces it, when TRL names one

    def accepts(self, value) -> bool:
        if "any" in self.types:
            return True
        if value is None:
            return "none" in self.types
        if isinstance(value, bool):
            return "bool" in self.types
        if isinstance(value, int):
            return bool({"int", "float"} & set(self.types))
        if isinstance(value, float):
            return "float" in self.types
        if isinstance(value, str):
            return "str" in self.types
        if isinstance(value, (list, tuple)):
            return "list" in self.types
        if isinstance(value, dict):
            return "dict" in self.types
        return False

    @property
    def type_text(self) -> str:
        names = [t if t != "none" else "null" for t in self.types]
        return " or ".join(names)


@dataclass(frozen=True)
class TrainerFields:
    fields: dict                     # name -> TrainerField
    source: str                      # where the table comes from, for messages
    versions: dict = field(default_factory=dict)
    fused_lm_head: bool = False
    conditions: tuple = ()           # r1exp.grpo.source.Condition: TRL's warnings and errors about field values

    def __contains__(self, name) -> bool:
        return name in self.fields

    def default(self, name, fallback=None):
        f = self.fields.get(name)
        return fallback if f is None or f.default == MISSING else f.default

    def suggest(self, name: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(name, list(self.fields), n=n, cutoff=0.6)


def package_file(package: str, relative: str) -> Path | None:
    """The path of a file inside an installed package, without importing the package (None if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def grpo_fields() -> TrainerFields:
    """The installed GRPOConfig's fields: the cached table when it was made from the installed versions (a JSON
    read instead of parsing ~4,000 lines), parsed from the source otherwise, the cached table when TRL is absent."""
    installed = {"trl": _version("trl"), "transformers": _version("transformers")}
    if installed["trl"] is None or installed["transformers"] is None:
        return load_cache()
    cached = load_cache()
    if cached.versions == installed:
        return TrainerFields(cached.fields, f"trl {installed['trl']} (installed)", cached.versions,
                             cached.fused_lm_head, cached.conditions)
    return parse_installed()


def parse_installed() -> TrainerFields:
    """GRPOConfig's fields parsed from the installed TRL and transformers source."""
    files = [(package_file(pkg, rel), cls) for pkg, rel, cls in CHAIN]
    if files[0][0] is None or files[-1][0] is None:
        return load_cache()
    enums = {}
    for pkg, rel in ENUM_FILES:
        path = package_file(pkg, rel)
        if path:
            enums.update(_string_enums(ast.parse(path.read_text())))
    fields, helps = {}, {}   # helps: TRL's own help texts (its choices and deprecations; transformers' are not read)
    for (path, cls), (pkg, _, _) in zip(files, CHAIN):
        if path is not None:
            tree = ast.parse(path.read_text())
            fields.update(_class_fields(tree, cls, enums))
            if pkg == "trl":
                helps.update(_class_helps(tree, cls))
    fields, conditions = _with_trl_checks(fields, helps)
    head = package_file(FUSED_HEAD[0], FUSED_HEAD[1])
    fused = bool(head and FUSED_HEAD[2] in head.read_text())
    versions = {"trl": _version("trl"), "transformers": _version("transformers")}
    return TrainerFields(fields, f"trl {versions['trl']} (installed)", versions, fused, conditions)


def _with_trl_checks(fields: dict, helps: dict) -> tuple[dict, tuple]:
    """The fields with the choices, deprecations and bool spellings TRL's own checks give them, and TRL's conditions."""
    from dataclasses import replace

    from r1exp.grpo import source as trl_source

    trees = [(ast.parse(path.read_text()), function, f"{pkg}/{rel}") for pkg, rel, function in TRL_VALIDATION
             if (path := package_file(pkg, rel)) is not None]
    found = trl_source.read(trees, fields, helps)
    out = dict(fields)
    for name, f in fields.items():
        changes = {}
        if "str" in f.types and name in found.choices:
            changes["choices"] = tuple(found.choices[name])
        elif "str" in f.types and not f.choices and name in found.help_choices:
            changes["choices"] = tuple(found.help_choices[name])
        if name in found.bool_aliases and "bool" not in f.types:
            changes["types"] = tuple(sorted({*f.types, "bool"}))
        if name in found.deprecated:
            changes["deprecated"], changes["replacement"] = found.deprecated[name]
        out[name] = replace(f, **changes) if changes else f
    return out, tuple(found.conditions)


def _class_fields(tree: ast.Module, class_name: str, enums: dict) -> dict:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            out = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    name = item.target.id
                    types, choices = _annotation(item.annotation, enums)
                    out[name] = TrainerField(name, tuple(sorted(types)), _default(item.value), tuple(choices))
            return out
    return {}


def _class_helps(tree: ast.Module, class_name: str) -> dict:
    """field -> its help text (`metadata={"help": ...}`)."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {item.target.id: _help(item.value) for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and _help(item.value)}
    return {}


def _help(value) -> str:
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
        for kw in value.keywords:
            if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
                for k, v in zip(kw.value.keys, kw.value.values):
                    if isinstance(k, ast.Constant) and k.value == "help" and isinstance(v, ast.Constant):
                        return str(v.value)
    return ""


def _annotation(node, enums: dict) -> tuple[set, list]:
    """The simple types an annotation accepts, and the choices of a string enum in it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        return _annotation(ast.parse(node.value, mode="eval").body, enums)
    if isinstance(node, ast.Constant) and node.value is None:
        return {"none"}, []
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, lc = _annotation(node.left, enums)
        right, rc = _annotation(node.right, enums)
        return left | right, lc + rc
    if isinstance(node, ast.Name):
        if node.id in enums:
            return {"str"}, list(enums[node.id])
        return {SIMPLE_TYPES.get(node.id, "any")}, []
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        outer = node.value.id
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer in ("Optional", "Union"):
            types, choices = ({"none"} if outer == "Optional" else set()), []
            for part in inner:
                t, c = _annotation(part, enums)
                types |= t
                choices += c
            return types, choices
        if outer == "Literal":
            values = [p.value for p in inner if isinstance(p, ast.Constant)]
            return {"bool" if isinstance(v, bool) else SIMPLE_TYPES.get(type(v).__name__, "any") for v in values}, []
        return {SIMPLE_TYPES.get(outer, "any")}, []
    return {"any"}, []


def _default(value):
    if value is None:
        return MISSING
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
        for kw in value.keywords:
            if kw.arg == "default":
                return _literal(kw.value)
        return MISSING
    return _literal(value)


def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return MISSING


def _string_enums(tree: ast.Module) -> dict:
    """`class X(ExplicitEnum): A = "a"` -> {"X": ["a", ...]} for every string enum in a module."""
    enums = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any("Enum" in getattr(b, "id", "") for b in node.bases):
            values = [item.value.value for item in node.body
                      if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant)
                      and isinstance(item.value.value, str)]
            if values:
                enums[node.name] = values
    return enums


def to_json(table: TrainerFields) -> dict:
    fields = {}
    for name, f in sorted(table.fields.items()):
        entry = {"types": list(f.types)}
        if f.default != MISSING:
            entry["default"] = f.default
        if f.choices:
            entry["choices"] = list(f.choices)
        if f.deprecated:
            entry["deprecated"] = f.deprecated
            entry["replacement"] = f.replacement
        fields[name] = entry
    return {"versions": table.versions, "fused_lm_head": table.fused_lm_head, "fields": fields,
            "conditions": [c.as_dict() for c in table.conditions]}


def load_cache(path: Path = CACHE) -> TrainerFields:
    data = json.loads(path.read_text())
    from r1exp.grpo.source import Condition

    fields = {name: TrainerField(name, tuple(e["types"]), e.get("default", MISSING), tuple(e.get("choices", ())),
                                 e.get("deprecated", ""), e.get("replacement", ""))
              for name, e in data["fields"].items()}
    conditions = tuple(Condition(**c) for c in data.get("conditions", ()))
    return TrainerFields(fields, f"cached table of trl {data['versions'].get('trl')} (trl is not installed here)",
                         data["versions"], bool(data.get("fused_lm_head")), conditions)


def write_cache(path: Path = CACHE) -> Path:
    table = parse_installed()
    path.write_text(json.dumps(to_json(table), indent=1, sort_keys=True, default=list) + "\n")
    return path


if __name__ == "__main__":
    print(f"wrote {write_cache()}")
