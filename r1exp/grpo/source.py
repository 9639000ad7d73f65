"""What TRL's own code says about GRPOConfig's values, read with `ast` (no import of TRL or torch).

- `choices`: a string field compared with literals in an `if/elif ... else: raise` chain (or `if X not in [...]:
  raise`) accepts exactly those literals: that is where TRL rejects a `loss_type` it does not know.
- `help_choices`: a field whose help text says "Must be one of ...", "Supported values are ..." (used when no
  chain decides it).
- `bool_aliases`: a field GRPOConfig.__post_init__ maps from True/False (`{True: "group", False: "none"}.get(...)`).
- `deprecated`: field -> (TRL's message, the replacing field): a help text that says "Deprecated", or a
  `warnings.warn("... deprecated ...")` under `if self.<field>` in __post_init__.
- `conditions`: TRL's warnings and errors whose condition reads only field values (`args.loss_type == "luspo" and
  args.importance_sampling_level != "sequence"`), evaluated against a config by `Condition.holds`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import asdict, dataclass, field

RAISES = "error"
WARNS = "warning"
WARN_CALLS = ("warn", "warning")
HELP_CHOICES = re.compile(r"(?:must be one of|supported values are|supported options are|possible values are)"
                          r":?\s*(.+?)(?:\.\s|\.$|$)", re.I | re.S)
QUOTED = re.compile(r"[`']+([A-Za-z_][\w\-]*)[`']+")


@dataclass(frozen=True)
class Condition:
    when: str            # a Python expression over field names (`loss_type == 'luspo' and ...`)
    level: str           # error (TRL raises) | warning (TRL warns)
    message: str         # TRL's message, `{field}` where TRL formats a value in
    fields: tuple        # the fields it reads
    where: str           # file:line in TRL

    def as_dict(self) -> dict:
        return {**asdict(self), "fields": list(self.fields)}

    def holds(self, values: dict) -> bool | None:
        """True/False for a config's values (field -> value); None when a value is unknown."""
        if any(f not in values for f in self.fields):
            return None
        try:
            return bool(_evaluate(ast.parse(self.when, mode="eval").body, values))
        except (_Unsupported, TypeError):
            return None

    def text(self, values: dict) -> str:
        try:
            return self.message.format_map({f: values.get(f) for f in self.fields} | _Missing())
        except (KeyError, ValueError, IndexError, AttributeError):
            return self.message


class _Missing(dict):
    def __missing__(self, key):
        return "{" + key + "}"


@dataclass
class Found:
    choices: dict = field(default_factory=dict)
    help_choices: dict = field(default_factory=dict)
    bool_aliases: set = field(default_factory=set)
    deprecated: dict = field(default_factory=dict)
    conditions: list = field(default_factory=list)


def read(trees: list, fields: dict, helps: dict) -> Found:
    """trees: (module AST, the function whose warnings/errors are conditions or None, the file's name) for TRL's
    files; fields: the GRPOConfig fields (TrainerField by name); helps: their help texts."""
    found = Found()
    for name, text in helps.items():
        m = HELP_CHOICES.search(text)
        if m:
            values = list(dict.fromkeys(v for v in QUOTED.findall(m.group(1)) if v not in ("True", "False", "None")))
            if len(values) >= 2:
                found.help_choices[name] = values
        if re.search(r"\bdeprecated\b", text, re.I):
            sentence = text[re.search(r"\bdeprecated\b", text, re.I).start():]
            found.deprecated[name] = (_first_sentence(sentence), _replacement(sentence, fields, name))
    for tree, function, label in trees:
        _chains(tree, fields, found)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == function:
                _bool_aliases(node, found)
                _walk(node.body, [], fields, found, label)
    for name in list(found.choices):
        found.choices[name] = sorted(found.choices[name])
    return found


# ---- choices: if/elif chains that end in raise

def _chains(tree, fields: dict, found: Found) -> None:
    seen = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If) or id(node) in seen:
            continue
        tests, current = [], node
        while True:
            seen.add(id(current))
            tests.append(current.test)
            if len(current.orelse) == 1 and isinstance(current.orelse[0], ast.If):
                current = current.orelse[0]
                continue
            break
        rejects_the_rest = current.orelse and isinstance(current.orelse[0], ast.Raise)
        literals = [_compared_literals(t, fields) for t in tests]
        names = {name for name, _, _ in literals if name}
        if len(names) != 1:
            continue
        name = names.pop()
        if rejects_the_rest and all(n == name and positive for n, _, positive in literals):
            found.choices.setdefault(name, set()).update(v for _, vs, _ in literals for v in vs)
        elif (len(tests) == 1 and node.body and isinstance(node.body[0], ast.Raise)
              and literals[0][0] == name and not literals[0][2]):  # if X not in (...): raise
            found.choices.setdefault(name, set()).update(literals[0][1])


def _compared_literals(test, fields: dict) -> tuple:
    """(field, its literals, positive) for `X == 'a'` / `X in ('a', 'b')` (positive) or `X not in (...)`."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None, (), True
    name = _field(test.left, fields)
    op, right = test.ops[0], test.comparators[0]
    if name is None:
        return None, (), True
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return name, (right.value,), True
    if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.List, ast.Tuple, ast.Set)):
        values = tuple(e.value for e in right.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
        if len(values) == len(right.elts):
            return name, values, isinstance(op, ast.In)
    return None, (), True


def _field(node, fields: dict) -> str | None:
    """`args.X`, `self.X` or `self.args.X` naming a GRPOConfig field X."""
    if not isinstance(node, ast.Attribute) or node.attr not in fields:
        return None
    base = node.value
    if isinstance(base, ast.Name) and base.id in ("self", "args"):
        return node.attr
    if isinstance(base, ast.Attribute) and base.attr == "args" and isinstance(base.value, ast.Name) \
            and base.value.id == "self":
        return node.attr
    return None


# ---- __post_init__: True/False spellings

def _bool_aliases(function, found: Found) -> None:
    for node in ast.walk(function):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "get"
                and isinstance(node.value.func.value, ast.Dict)
                and {k.value for k in node.value.func.value.keys if isinstance(k, ast.Constant)} == {True, False}):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    found.bool_aliases.add(target.attr)


# ---- conditions: if <test over fields>: warn(...) / raise ...(...)

def _walk(body: list, outer: list, fields: dict, found: Found, where: str) -> None:
    for statement in body:
        if not isinstance(statement, ast.If):
            continue
        previous: list = []
        current = statement
        while True:
            test = ast.BoolOp(ast.And(), [*outer, *[ast.UnaryOp(ast.Not(), p) for p in previous], current.test]) \
                if (outer or previous) else current.test
            _record(current, test, fields, found, where)
            _walk(current.body, [test], fields, found, where)
            previous.append(current.test)
            if len(current.orelse) == 1 and isinstance(current.orelse[0], ast.If):
                current = current.orelse[0]
                continue
            break


def _record(node: ast.If, test, fields: dict, found: Found, where: str) -> None:
    first = node.body[0] if node.body else None
    level, message = None, None
    if isinstance(first, ast.Raise) and isinstance(first.exc, ast.Call) and first.exc.args:
        level, message = RAISES, _template(first.exc.args[0], fields)
    elif (isinstance(first, ast.Expr) and isinstance(first.value, ast.Call)
          and isinstance(first.value.func, ast.Attribute) and first.value.func.attr in WARN_CALLS
          and first.value.args):
        level, message = WARNS, _template(first.value.args[0], fields)
    if level is None or message is None:
        return
    try:
        names = sorted(_names(test, fields))
    except _Unsupported:
        return
    if not names:
        return
    if re.search(r"\bdeprecated\b", message, re.I):
        if level == WARNS and len(names) == 1:
            plain = message.replace("{{", "{").replace("}}", "}")
            found.deprecated[names[0]] = (_first_sentence(plain), _replacement(plain, fields, names[0]))
        return
    when = _normalise(test)
    if not any(c.when == when for c in found.conditions):
        found.conditions.append(Condition(when, level, message, tuple(names), f"{where}:{node.lineno}"))


def _normalise(test) -> str:
    class Strip(ast.NodeTransformer):
        def visit_Attribute(self, node):
            return ast.Name(node.attr, ast.Load())

    return ast.unparse(Strip().visit(ast.parse(ast.unparse(test), mode="eval")).body)


def _template(node, fields: dict) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value).replace("{", "{{").replace("}", "}}"))
            elif isinstance(value, ast.FormattedValue):
                name = _field(value.value, fields)
                parts.append("{" + name + "}" if name else "...")
        return "".join(parts)
    return None


class _Unsupported(Exception):
    pass


def _names(node, fields: dict) -> set:
    """The fields an expression reads; _Unsupported when it reads anything but fields and literals."""
    if isinstance(node, ast.BoolOp):
        return set().union(*(_names(v, fields) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _names(node.operand, fields)
    if isinstance(node, ast.Compare):
        return set().union(_names(node.left, fields), *(_names(c, fields) for c in node.comparators))
    if isinstance(node, ast.Constant):
        return set()
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and all(isinstance(e, ast.Constant) for e in node.elts):
        return set()
    name = _field(node, fields)
    if name is None:
        raise _Unsupported(ast.dump(node)[:80])
    return {name}


OPS = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.In: lambda a, b: a in b,
       ast.NotIn: lambda a, b: a not in b, ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
       ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b,
       ast.GtE: lambda a, b: a >= b}


def _evaluate(node, values: dict):
    if isinstance(node, ast.BoolOp):
        results = [_evaluate(v, values) for v in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _evaluate(node.operand, values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node, values)
            if type(op) not in OPS or not OPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_evaluate(e, values) for e in node.elts]
    if isinstance(node, ast.Name) and node.id in values:
        return values[node.id]
    raise _Unsupported(ast.dump(node)[:80])


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.match(r"(.+?\.)(\s|$)", text)
    rest = text[m.end():] if m else ""
    more = re.match(r"(\s*(?:Use|use)\b.+?\.)(\s|$)", rest)   # "... is deprecated. Use `x` instead."
    return (m.group(1) + (" " + more.group(1).strip() if more else "")) if m else text


def _replacement(text: str, fields: dict, name: str) -> str:
    for candidate in re.findall(r"\b[Uu]se `([A-Za-z_]\w*)", text):
        if candidate in fields and candidate != name:
            return candidate
    return ""
