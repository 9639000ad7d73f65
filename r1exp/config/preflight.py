"""Before Hydra runs anything: compose every job, validate it, and either stop (exit 2), print the dry-run plan
(exit 0), or let the run go on (None)."""

from __future__ import annotations

import sys

from r1exp.config.compose import CommandLine, compose, job_overrides, parse_command_line
from r1exp.errors import EXIT_OK, EXIT_USAGE, Problem, errors_of, render_problems

parse = parse_command_line


def compose_jobs(cl: CommandLine) -> list:
    return [compose(o, cl.config_name, cl.config_dir or cl.config_path) for o in job_overrides(cl.overrides, cl.multirun)]


def check(cl: CommandLine) -> int | None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        jobs = compose_jobs(cl)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        print(render_problems([_composition_problem(e, cl)]), file=sys.stderr)
        return EXIT_USAGE
    from r1exp.config.environment import detect
    from r1exp.config.validate import validate

    env = detect()
    seen, problems = set(), []
    for cfg in jobs:
        for p in validate(cfg, env):
            if (p.key, str(p.value), p.why) not in seen:
                seen.add((p.key, str(p.value), p.why))
                problems.append(p)
    if problems:
        print(render_problems(problems), file=sys.stderr)
    if errors_of(problems):
        n = len(errors_of(problems))
        print(f"\n{n} problem{'s' * (n > 1)} found before loading anything; nothing was started.", file=sys.stderr)
        return EXIT_USAGE
    if any(bool(cfg.get("dry_run", False)) for cfg in jobs):
        from r1exp.config.report import print_dry_run

        for cfg in jobs:
            print_dry_run(cfg, env)
        return EXIT_OK
    return None


def _composition_problem(e: Exception, cl: CommandLine) -> Problem:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    rest = "\n  ".join(line for line in text.splitlines()[1:] if line.strip())
    key = _offending_key(text, cl.overrides)
    fix = "check the spelling; `python -m r1exp --help` lists the groups and their options"
    if rest:
        fix = rest + "\n  " + fix
    return Problem(key, " ".join(cl.overrides), first, fix, rule="hydra.compose")


def _offending_key(text: str, overrides: list[str]) -> str:
    for o in overrides:
        key = o.lstrip("+~").split("=")[0]
        if key and (f"'{key}'" in text or f"{key}/" in text or f"'{key.split('.')[-1]}'" in text):
            return key
    return "command line"
