"""Before Hydra runs anything: compose every job, validate it, and either stop (exit 2), print the dry-run plan
(exit 0), or let the run go on (None)."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from r1exp.config.compose import CONF_DIR, CommandLine, compose, job_overrides, parse_command_line, sweep_overrides
from r1exp.config.compose_errors import composition_problem, silent_mistakes
from r1exp.errors import EXIT_OK, EXIT_USAGE, Problem, errors_of, render_problems

parse = parse_command_line


def compose_jobs(cl: CommandLine) -> list:
    folder = cl.config_dir or cl.config_path
    overrides = sweep_overrides(cl.overrides, cl.multirun, cl.config_name, folder)  # + a sweep config's params
    return [compose(o, cl.config_name, folder) for o in job_overrides(overrides, cl.multirun)]


def check(cl: CommandLine) -> int | None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        jobs = compose_jobs(cl)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
        print(render_problems([_composition_problem(e, cl)]), file=sys.stderr)
        print("\nthe command line does not compose; nothing was started.", file=sys.stderr)
        return EXIT_USAGE
    from r1exp.machine.facts import detect
    from r1exp.checks.validate import preflight

    env = detect()
    output_dir = output_root(cl)
    per_job = [preflight(cfg, env, output_dir=output_dir) for cfg in jobs]
    problems = (silent_mistakes(cl.overrides, conf_dir(cl), cl.config_name)
                + _unique(p for job in per_job for p in job.problems))
    if errors_of(problems):
        print(render_problems(problems), file=sys.stderr)
        n = len(errors_of(problems))
        print(f"\n{n} problem{'s' * (n > 1)} found before loading anything; nothing was started.", file=sys.stderr)
        return EXIT_USAGE
    if any(bool(cfg.get("dry_run", False)) for cfg in jobs):
        from r1exp.checks.report import print_dry_run
        from r1exp.rewards.sanity import dry_run_sanity, render

        sanity = [dry_run_sanity(cfg) for cfg in jobs]  # rewards on gold and wrong answers, when the data is local
        failed = list({(p.key, p.why): p for s in sanity for p in s.problems}.values())
        if failed:
            print(render_problems(failed) + "\n\nthe reward sanity check failed; nothing was started.", file=sys.stderr)
            return EXIT_USAGE
        for report, checked in zip(sanity, per_job):
            print_dry_run(checked)  # the plan and this job's warnings
            print(render(report))
        return EXIT_OK
    if problems:
        print(render_problems(problems), file=sys.stderr)  # warnings only: the run goes on
    return None


def _unique(problems) -> list[Problem]:
    """The same problem in several jobs of a sweep is reported once."""
    seen, out = set(), []
    for p in problems:
        if (p.key, str(p.value), p.why) not in seen:
            seen.add((p.key, str(p.value), p.why))
            out.append(p)
    return out


def conf_dir(cl: CommandLine) -> Path:
    return Path(cl.config_dir or cl.config_path or CONF_DIR)


def output_root(cl: CommandLine) -> str:
    """The part of hydra.run.dir (hydra.sweep.dir for -m) before its first interpolation: the folder that must be
    writable for Hydra to create the run folder in it."""
    key = "hydra.sweep.dir" if cl.multirun else "hydra.run.dir"
    given = [o.partition("=")[2] for o in cl.overrides if o.lstrip("+").startswith(key + "=")]
    path = given[-1] if given else "outputs/${now:%Y-%m-%d}"
    head = path.split("${")[0]
    return head if head.endswith("/") or "${" not in path else (str(Path(head).parent) if head else ".")


def _composition_problem(e: Exception, cl: CommandLine) -> Problem:
    def base_keys(path: str) -> list:
        """Keys under `path` in the config composed with the command line's group choices only."""
        choices = [o for o in cl.overrides if "=" in o and "." not in o.partition("=")[0]]
        try:
            node = OmegaConf.select(compose(choices, cl.config_name, cl.config_dir or cl.config_path), path or "")
        except Exception:  # noqa: BLE001 - a suggestion is optional; the problem is reported either way
            return []
        return list(node.keys()) if OmegaConf.is_dict(node) else []

    return composition_problem(e, cl.overrides, conf_dir(cl), base_keys)
