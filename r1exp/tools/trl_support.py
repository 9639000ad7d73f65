"""What the installed TRL says about tools, read from its source with `ast` (no import of TRL, transformers or torch).

- `TrlTools.accepts`: the keyword arguments GRPOTrainer.__init__ takes (`tools`, `environment_factory`);
- `TrlTools.needs`: feature -> the transformers version TRL requires for it (`if tools: ... Version(transformers.
  __version__) >= Version("5.0.0")`);
- `TrlTools.parsed_templates`: the chat templates whose tool calls TRL can parse (`add_response_schema` compares the
  tokenizer's template with these, read from TRL's own chat_templates/*.jinja); any other template needs the
  tokenizer's own `response_template` (or legacy `response_schema`), else TRL stops with "Unrecognized chat template".

A TRL whose files are not where this expects gives an empty answer for that part, and the rules that read it say
they could not tell (a warning), never that the run is wrong.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from r1exp.grpo.fields import package_file

TRAINER = "trainer/grpo_trainer.py"
TEMPLATES = "chat_template_utils.py"
FEATURES = ("tools", "environment_factory")


@dataclass(frozen=True)
class TrlTools:
    version: str | None
    accepts: frozenset = frozenset()       # GRPOTrainer.__init__ keyword arguments among FEATURES
    needs: dict = field(default_factory=dict)             # feature -> minimal transformers version
    parsed_templates: dict = field(default_factory=dict)  # TRL's name for a template -> its text

    def known(self) -> bool:
        return self.version is not None and bool(self.accepts or self.needs)


@functools.lru_cache(maxsize=1)
def trl_tools() -> TrlTools:
    try:
        version = metadata.version("trl")
    except metadata.PackageNotFoundError:
        return TrlTools(None)
    trainer, templates = package_file("trl", TRAINER), package_file("trl", TEMPLATES)
    accepts, needs = _trainer_facts(trainer) if trainer else (frozenset(), {})
    parsed = _parsed_templates(templates) if templates else {}
    return TrlTools(version, accepts, needs, parsed)


def _parse(path: Path):
    try:
        return ast.parse(path.read_text())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _trainer_facts(path: Path) -> tuple[frozenset, dict]:
    tree = _parse(path)
    if tree is None:
        return frozenset(), {}
    accepts, needs = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "GRPOTrainer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    names = [a.arg for a in item.args.args + item.args.kwonlyargs]
                    accepts |= {n for n in names if n in FEATURES}
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id in FEATURES:
            version = _transformers_floor(node.body)
            if version:
                needs[node.test.id] = version
    return frozenset(accepts), needs


def _transformers_floor(body) -> str | None:
    """The X of a `Version(transformers.__version__) >= Version("X")` test inside these statements."""
    for stmt in body:
        for node in ast.walk(stmt):
            if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.GtE)):
                continue
            left, right = node.left, node.comparators[0]
            if "transformers.__version__" in ast.unparse(left) and isinstance(right, ast.Call) and right.args:
                arg = right.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    return arg.value
    return None


def _parsed_templates(path: Path) -> dict:
    """TRL's template name -> text, for the templates `add_response_schema` recognizes."""
    tree = _parse(path)
    if tree is None:
        return {}
    files = {}   # module-level NAME = (_CHAT_TEMPLATES_DIR / "x.jinja").read_text(...)
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            for const in ast.walk(node.value):
                if isinstance(const, ast.Constant) and isinstance(const.value, str) and const.value.endswith(".jinja"):
                    files[node.targets[0].id] = const.value
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "add_response_schema":
            for compare in ast.walk(node):
                if isinstance(compare, ast.Compare) and ast.unparse(compare.left) == "chat_template":
                    for right in compare.comparators:
                        items = right.elts if isinstance(right, (ast.List, ast.Tuple, ast.Set)) else [right]
                        names |= {e.id for e in items if isinstance(e, ast.Name)}
    out = {}
    folder = path.parent / "chat_templates"
    for name in sorted(names):
        if name in files:
            try:
                out[name.removesuffix("_chat_template")] = (folder / files[name]).read_text()
            except OSError:
                continue
    return out
