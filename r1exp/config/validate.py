"""Validation: run every rule of the table in `rules.py` over a composed config; collect every problem.

Pure and fast: it reads the config and facts about the machine (`environment.Environment`), imports nothing
heavy and loads no weights. Rules whose scope is "machine" (what is installed here, which GPU is here) become
warnings in a dry run, which is often made on a laptop to plan a run for a GPU box.
"""

from __future__ import annotations

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1exp.config.rule import Context, Rule
from r1exp.errors import Problem


def validate(cfg, env, dry_run: bool | None = None, output_dir: str | None = None) -> list[Problem]:
    from r1exp.config.rules import RULES

    dry = bool(cfg.get("dry_run", False)) if dry_run is None else dry_run
    unresolved = _unresolvable(cfg)
    if unresolved:
        return unresolved
    ctx = Context(cfg=cfg, env=env, dry_run=dry, output_dir=output_dir)
    problems: list[Problem] = []
    crashed: list[tuple[Rule, Exception]] = []
    for rule in RULES:
        try:
            found = list(rule.check(ctx) or ())
        except Exception as e:  # noqa: BLE001 - reported below, never swallowed
            crashed.append((rule, e))
            continue
        for p in found:
            severity = "warning" if (rule.scope == "machine" and dry and p.severity == "error") else p.severity
            problems.append(Problem(p.key, p.value, p.why, p.fix, rule=p.rule or rule.id, severity=severity))
    return problems + _crashes(crashed, any(p.severity == "error" for p in problems))


def _crashes(crashed: list, after_errors: bool) -> list[Problem]:
    """A check that raises on values other rules already reject waits for those to be fixed (one note); one that
    raises on a config with no errors is a bug in r1exp: each is reported, the run is not blocked by it."""
    if not crashed:
        return []
    if after_errors:
        ids = ", ".join(rule.id for rule, _ in crashed)
        return [Problem("checks", ids, "these checks could not run on values the errors above reject",
                        "fix the errors; these checks run again then", rule="skipped", severity="warning")]
    return [Problem(", ".join(rule.keys[:3]), "(not checked)", f"the check {rule.id} failed: {type(e).__name__}: {e}",
                    "this is a bug in r1exp's checker: please report it with this command line", rule="internal",
                    severity="warning") for rule, e in crashed]


def _unresolvable(cfg) -> list[Problem]:
    """Every interpolation must resolve before any rule reads a value."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        return [Problem(str(key), "(unresolvable)", str(e).splitlines()[0],
                        "fix the interpolation or give the key a value", rule="config.resolve")]
    return []
