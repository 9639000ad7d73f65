"""`python -m r1exp [overrides]`: check every job of the command line, then hand it to Hydra to run.

    compose (all jobs) -> validate -> plan -> dry_run? print and exit -> Hydra runs r1exp.run.run per job

A configuration mistake exits with status 2 before Hydra creates a run folder; a failed run exits 1.
"""

from __future__ import annotations

import sys

from r1exp.errors import EXIT_OK, EXIT_USAGE

_status = {"code": EXIT_OK}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from r1exp.scale.distributed import route_rank_output

    route_rank_output()  # a rank > 0 of a distributed run writes to <run folder>/rank<N>.log
    from r1exp.checks import preflight

    cl = preflight.parse(argv)
    if not cl.passthrough:
        verdict = preflight.check(cl)
        if verdict in (None, EXIT_OK) and cl.multirun:
            from r1exp.scale.slurm import refused

            if refused(cl, dry_run=verdict == EXIT_OK):  # hydra/launcher=slurm: sbatch --test-only said no
                return EXIT_USAGE
        if verdict is not None:
            return verdict  # dry run done, or problems reported
        from r1exp.records import run_folder

        claim = run_folder.claim(argv, cl)  # a folder of its own, claimed before Hydra writes into it
        if claim is None:
            return EXIT_USAGE  # hydra.run.dir holds another run (the fix is printed)
        with claim:
            return _hydra(claim.argv, cl)
    return _hydra(argv, cl)


def _hydra(argv: list[str], cl) -> int:
    import hydra

    from r1exp.config.compose import CONF_DIR

    # --config-dir adds a folder (sweeps/, a reproduction's saved config) in front of conf/, which stays searchable
    config_path = None if cl.config_path else str(CONF_DIR)

    @hydra.main(config_path=config_path, config_name=cl.config_name, version_base="1.3")
    def hydra_job(cfg):
        from r1exp.run import run, run_dir_of_hydra
        from r1exp.scale.sweep import job_value

        code = run(cfg)
        _status["code"] = max(_status["code"], code)
        return job_value(cfg, code, run_dir_of_hydra())  # the exit status, or an Optuna search's metric

    sys.argv = [sys.argv[0]] + argv
    from r1exp.scale.sweep import SweepStopped, summarize

    try:
        hydra_job()
    except SweepStopped as stopped:  # SIGTERM / Ctrl-C during a job: no further jobs; summarise what ran
        return max(_status["code"], summarize(stopped.sweep_dir) or EXIT_OK)
    except SystemExit as e:  # Hydra reports its own errors and exits 1; a usage error for us
        if e.code not in (0, None):
            return EXIT_USAGE if _status["code"] == EXIT_OK else _status["code"]
    if cl.multirun:  # jobs may have run in other processes (submitit): the sweep summary read their run.json
        from r1exp.scale.sweep import last_exit_code

        return max(_status["code"], last_exit_code() or EXIT_OK)
    return _status["code"]


if __name__ == "__main__":
    sys.exit(main())
