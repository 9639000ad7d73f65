"""Validation: gather the rules table and run it over a composed config; collect every problem.

The table is one list of `Rule` rows gathered from where each rule belongs: the generic rows (schema, machine,
memory, run folder), the trainer's (TRL's fields and batch arithmetic), the version table's, the rewards' and the
data's, and the rows of the chosen engine and loader (their classes' `rules`). Pure and fast: it reads the config
and facts about the machine (`r1exp.machine.facts.Environment`), imports nothing heavy and loads no weights.

Rules whose scope is "machine" (what is installed here, which GPU is here, whether the model and the data are on
disk) are errors: a dry run answers "will this run start here?". The one exception is a dry run whose config says
it plans for another machine (`hardware.gpu_memory_gb`, `hardware.num_gpus` or `hardware.device` set away from
their defaults null / null / auto): then what this machine lacks is a warning (`severity_here`, the one place
that decides it).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from r1exp import components, versions
from r1exp.components import Resolved
from r1exp.machine.facts import run_device
from r1exp.evaluation import rules as eval_rules
from r1exp.models import rules as model_rules
from r1exp.models.architecture import fill_arch
from r1exp.plan.memory import MemoryPlan, plan_memory
from r1exp.scale import distributed
from r1exp.checks import plausibility
from r1exp.checks import secrets as secret_rules
from r1exp.checks import sources
from r1exp.checks import trainer as trainer_rules
from r1exp.checks import generic as checks
from r1exp.config.rule import Context, Rule
from r1exp.config.schema import problems_of
from r1exp.data import rules as data_rules
from r1exp.data import scan
from r1exp.errors import Problem
from r1exp.rewards import monitor
from r1exp.rewards import rules as reward_rules
from r1exp.tools import rules as tool_rules

SHARED_RULES: tuple = (*checks.RULES, *trainer_rules.RULES, *versions.RULES, *reward_rules.RULES, *data_rules.RULES,
                       *sources.RULES, *model_rules.RULES, *eval_rules.RULES, *plausibility.RULES,
                       *distributed.RULES, *secret_rules.RULES, *tool_rules.RULES, *monitor.budget_rules(), *scan.data_rules())
# hardware.* keys and their defaults: a config that sets one of them otherwise plans for another machine
PLAN_ELSEWHERE = ("; or, to plan a run for another machine, say which (e.g. hardware.gpu_memory_gb=80): then what "
                  "this machine lacks is a warning")
HARDWARE_DEFAULTS = {"hardware.gpu_memory_gb": None, "hardware.num_gpus": None, "hardware.device": "auto"}


def rule_table(engine=None, loader=None) -> list[Rule]:
    """The rows that apply to a run with this engine and loader (None: not built, their rows are left out)."""
    own = [*(engine.rules if engine is not None else ()), *(loader.rules if loader is not None else ())]
    return [*SHARED_RULES, *own]


def shipped_rules() -> list[Rule]:
    """Every row of every shipped component (for documentation and the tests that every row has a case)."""
    rows = list(SHARED_RULES)
    for group in components.GROUPS:
        for option in components.shipped_options(group).values():
            rows += [r for r in components.component_class(option, group).rules if r not in rows]
    return rows


def build_components(cfg: DictConfig) -> tuple[object, object, list[Problem]]:
    """(engine, loader, problems): the chosen components, or None with the problems that prevent building one."""
    built, problems = {}, []
    for group in components.GROUPS:
        node = cfg.get(group)
        try:
            built[group] = components.build(node, group)
        except components.ComponentError as e:
            built[group] = None
            problems.append(Problem(f"{group}._target_", e.target, e.why,
                                    f"point {group}._target_ at a subclass of the {group} base class "
                                    f"(see conf/{group}/ and docs/extending.md)", rule="component.target"))
        except ValidationError as e:
            built[group] = None
            cls = components.component_class(node, group)
            problems += problems_of(e, group, cls, components.fields_of(node))
    return built["engine"], built["loader"], problems


@dataclass(frozen=True)
class Checked:
    """What the pre-flight found: every problem, and the run's components resolved once (None when there is an error:
    the engine or the loader could not be built, the plan could not be computed, or a rule said no)."""
    problems: list
    run: Resolved | None


def validate(cfg: DictConfig, env, dry_run: bool | None = None, output_dir: str | None = None) -> list[Problem]:
    """Every problem of a composed config (the pre-flight without its resolved components)."""
    return preflight(cfg, env, dry_run, output_dir).problems


def preflight(cfg: DictConfig, env, dry_run: bool | None = None, output_dir: str | None = None) -> Checked:
    """Resolve the run's components once (engine, loader, memory plan) and run the rules table over them."""
    dry = bool(cfg.get("dry_run", False)) if dry_run is None else dry_run
    unresolved = _unresolvable(cfg)
    if unresolved:
        return Checked(unresolved, None)
    arch_problems = fill_arch(cfg)   # model.arch from the model's own config.json (a YAML arch is checked against it)
    if arch_problems:
        return Checked(arch_problems, None)
    engine, loader, problems = build_components(cfg)
    if loader is not None:
        problems += loader.adopt(cfg)   # what the loader's library changes by its own rules (Unsloth's batch)
    planned = None
    if engine is not None and loader is not None:
        try:
            planned = plan_memory(cfg, env, engine, loader)
        except Exception as e:  # noqa: BLE001 - a value the rows reject; the rows that read the plan report it
            planned = e
    ctx = Context(cfg=cfg, env=env, dry_run=dry, output_dir=output_dir, engine=engine, loader=loader,
                  planned=planned)
    crashed: list[tuple[Rule, Exception]] = []
    for rule in rule_table(engine, loader):
        try:
            found = list(rule.check(ctx) or ())
        except Exception as e:  # noqa: BLE001 - reported below, never swallowed
            crashed.append((rule, e))
            continue
        for p in found:
            severity = severity_here(rule, p, cfg, dry)
            fix = p.fix + (PLAN_ELSEWHERE if dry and rule.scope == "machine" and severity == "error" else "")
            problems.append(Problem(p.key, p.value, p.why, fix, rule=p.rule or rule.id, severity=severity))
    problems += _crashes(crashed, any(p.severity == "error" for p in problems))
    if isinstance(planned, Exception) and not any(p.severity == "error" for p in problems):
        problems.append(Problem("memory", "(not planned)", f"the memory plan failed: {type(planned).__name__}: "
                                f"{planned}", "this is a bug in r1exp's planner: please report it with this command "
                                "line", rule="internal"))
    run = None
    if isinstance(planned, MemoryPlan) and not any(p.severity == "error" for p in problems):
        run = Resolved(cfg, env, engine, loader, planned, run_device(cfg, env))
    return Checked(problems, run)


def planned_elsewhere(cfg: DictConfig) -> dict:
    """The hardware.* keys set away from their defaults: the machine this config is planned for is not this one."""
    return {key: value for key, default in HARDWARE_DEFAULTS.items()
            if (value := OmegaConf.select(cfg, key, default=default)) != default}


def severity_here(rule: Rule, problem: Problem, cfg: DictConfig, dry: bool) -> str:
    """A machine-scope error stays an error (the run would not start here), except in a dry run planned for another
    machine, where it is a warning: plan on a laptop with hardware.gpu_memory_gb=80, run on the GPU box."""
    if rule.scope == "machine" and problem.severity == "error" and dry and planned_elsewhere(cfg):
        return "warning"
    return problem.severity


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


def _unresolvable(cfg: DictConfig) -> list[Problem]:
    """Every interpolation must resolve before any rule reads a value."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        return [Problem(str(key), "(unresolvable)", str(e).splitlines()[0],
                        "fix the interpolation or give the key a value", rule="config.resolve")]
    return []
