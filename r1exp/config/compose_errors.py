"""Hydra's composition errors as readable Problems (key, value, why, fix), and the mistakes composition lets
through silently (a misspelled option of an optional group such as `experiment=`).

Hydra's own messages are precise but written for Hydra users ("Could not override 'trainer.top_p'. To append to
your config use +..."); here they name the key and the value, and suggest the nearest option or key.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from r1exp.errors import Problem

NOT_FOUND = re.compile(r"Could not (?:find|load) '([\w/.-]+)/([\w.-]+)'")
CANNOT_OVERRIDE = re.compile(r"Could not override '([\w.]+)'")
ALREADY_THERE = re.compile(r"An item is already at '([\w.]+)'")
CANNOT_DELETE = re.compile(r"Could not delete from config. '([\w.]+)' does not exist")
GROUP_INTERPOLATION = re.compile(r"Error resolving interpolation '\$\{(\w+)\}'")   # `optional preset: ${model}`
HELP = "`python -m r1exp --help` lists the groups and their options"
LEXER_ERROR = re.compile(r"LexerNoViableAltException|token recognition error|mismatched input|extraneous input")
# Characters Hydra's override grammar accepts in an unquoted value (besides letters and digits).
UNQUOTED_OK = set("_-+./\\:@%~!?*&^<>|#") | set(" ")
OPTION_NAME = re.compile(r"^[\w.-]+$")


def split_override(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def value_of(key: str, overrides: list[str]) -> str:
    for o in overrides:
        k, v = split_override(o)
        if k == key:
            return v
    return ""


def group_options(conf_dir: Path, group: str) -> list[str]:
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def composition_problem(error: Exception, overrides: list[str], conf_dir: Path, base_keys=None) -> Problem:
    """One Problem for a Hydra/OmegaConf composition error. `base_keys(path)` lists the keys under a config path
    (of the config composed without the bad override), for "did you mean"."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if bad := invalid_option_name(overrides, conf_dir):
        return bad
    if LEXER_ERROR.search(text) and (bad := unquoted_value(overrides)):
        return bad
    if m := NOT_FOUND.search(text):
        group, option = m.group(1), m.group(2)
        return missing_option(group, option, group_options(conf_dir, group))
    if m := CANNOT_OVERRIDE.search(text):
        return unknown_key(m.group(1), value_of(m.group(1), overrides), base_keys)
    if m := ALREADY_THERE.search(text):
        key = m.group(1)
        return Problem(key, value_of(key, overrides), f"{key} is already in the config: `+` only adds new keys",
                       f"drop the +: {key}={value_of(key, overrides)}", rule="hydra.compose")
    if m := CANNOT_DELETE.search(text):
        return Problem(m.group(1), "~", f"{m.group(1)} is not in the config, so it cannot be deleted",
                       f"check the spelling; {HELP}", rule="hydra.compose")
    if (m := GROUP_INTERPOLATION.search(text)) and any(o.lstrip().startswith(f"~{m.group(1)}") for o in overrides):
        group = m.group(1)
        return Problem(group, f"~{group}", f"the {group} group cannot be deleted: another group follows its choice "
                       f"(conf/config.yaml: `optional preset: ${{{group}}}`)", f"choose another option instead: "
                       f"{group}=<option> ({', '.join(group_options(conf_dir, group))})", rule="hydra.compose")
    key = _unparsable(overrides) or _offending_key(text, overrides)
    rest = "; ".join(line.strip() for line in text.splitlines()[1:]
                     if line.strip() and "provider=" not in line and "search path" not in line.lower())
    value = value_of(key, overrides) if key != "command line" else " ".join(overrides)
    return Problem(key, value, first, (rest + "; " if rest else "") + HELP, rule="hydra.compose")


def missing_option(group: str, option: str, options: list[str]) -> Problem:
    close = difflib.get_close_matches(option, options, n=2, cutoff=0.5)
    hint = f"did you mean {group}={' or '.join(close)}? " if close else ""
    listing = ", ".join(options) if options else "(none yet)"
    return Problem(group, option, f"no option '{option}' in the config group '{group}' (no conf/{group}/{option}.yaml)",
                   f"{hint}options: {listing}", rule="hydra.compose")


def unknown_key(key: str, value: str, base_keys=None) -> Problem:
    parent, _, leaf = key.rpartition(".")
    if parent == "trainer":
        from r1exp.grpo.fields import grpo_fields

        fields = grpo_fields()
        if leaf in fields:
            return Problem(key, value, f"conf/trainer/ does not set {key}; it is a GRPOConfig field of "
                           f"{fields.source}, so it can be added", f"add it with a plus: +{key}={value}",
                           rule="hydra.compose")
        known = list(fields.fields)
    else:
        known = list(base_keys(parent)) if base_keys else []
    close = difflib.get_close_matches(leaf, known, n=3, cutoff=0.6)
    if close:
        fix = f"did you mean {' or '.join(f'{parent}.{c}' if parent else c for c in close)}?"
    else:
        fix = f"keys under {parent or 'the top level'}: {', '.join(sorted(known))}" if known else HELP
    return Problem(key, value, f"{key} is not a key of the config", fix, rule="hydra.compose")


def _unparsable(overrides: list[str]) -> str | None:
    """The key of the first override Hydra's grammar rejects on its own."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_overrides([o])
        except Exception:  # noqa: BLE001 - any parse failure marks the culprit
            return split_override(o)[0] or o
    return None


def _offending_key(text: str, overrides: list[str]) -> str:
    for o in overrides:
        key = split_override(o)[0]
        if key and (f"'{key}'" in text or f"{key}/" in text or f"'{key.split('.')[-1]}'" in text or o in text):
            return key
    return "command line"


def default_groups(conf_dir: Path, config_name: str = "config") -> set:
    """The groups named in the primary config's defaults list ('optional experiment: null' -> 'experiment')."""
    import yaml

    try:
        defaults = yaml.safe_load((conf_dir / f"{config_name}.yaml").read_text()).get("defaults", [])
    except (OSError, AttributeError, yaml.YAMLError):
        return set()
    names = set()
    for entry in defaults:
        if isinstance(entry, dict):
            for key in entry:
                names.add(str(key).replace("optional ", "").replace("override ", "").strip())
    return names


def silent_mistakes(overrides: list[str], conf_dir: Path, config_name: str = "config") -> list[Problem]:
    """`group=option` where the group has no such option: Hydra skips a missing option of an optional group
    (`optional experiment: null`) without a word."""
    problems = []
    groups = None
    for o in overrides:
        key, value = split_override(o)
        if "." in key or "/" in key or not value or value.startswith("[") or value == "null" or "," in value:
            continue
        if groups is None:
            groups = default_groups(conf_dir, config_name)
        options = group_options(conf_dir, key)
        if (key in groups or (conf_dir / key).is_dir()) and value not in options:
            problems.append(missing_option(key, value, options))
    return problems


def invalid_option_name(overrides: list[str], conf_dir: Path) -> Problem | None:
    """`model=../config`, `model=sub/dir`: a group's option is the name of a file in conf/<group>/, not a path."""
    for o in overrides:
        key, value = split_override(o)
        if not key or "." in key or "/" in key or not (conf_dir / key).is_dir():
            continue
        options = group_options(conf_dir, key)
        if value.startswith("[") and value.endswith("]"):  # several options (reward=[accuracy,format])
            for item in (v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()):
                if item not in options:
                    return missing_option(key, item, options)
            continue
        if value in ("", "null") or "," in value:
            continue
        if "/" in value or "\\" in value or value.startswith(".") or not OPTION_NAME.match(value):
            return Problem(key, value, f"{value!r} is not a valid option name: an option of {key} is the name of a "
                           f"file in conf/{key}/ (no folders, no ..)", f"options: {', '.join(options)}",
                           rule="hydra.compose")
    return None


def unquoted_value(overrides: list[str]) -> Problem | None:
    """The first override whose value holds a character Hydra's grammar only accepts inside quotes."""
    for o in overrides:
        key, value = split_override(o)
        if not value or value[0] in "'\"":
            continue
        odd = next((c for c in value if not (c.isascii() and (c.isalnum() or c in UNQUOTED_OK))
                    and c not in "[]{},=$'\"()"), None)
        if odd is not None:
            quoted = "'" + value.replace("'", "\\'") + "'"
            return Problem(key, value, f"Hydra's override grammar does not accept {odd!r} in an unquoted value",
                           f"quote the value: {key}={quoted} (in a shell, wrap the whole override in double "
                           f"quotes: \"{key}={quoted}\")", rule="hydra.compose")
    return None
