"""`python -m r1exp [overrides]`: check every job of the command line, then hand it to Hydra to run.

    compose (all jobs) -> validate -> plan -> dry_run? print and exit -> Hydra runs r1exp.run.run per job

A configuration mistake exits with status 2 before Hydra creates a run folder; a failed run exits 1.

`--help` / `-h` prints r1exp's help (conf/hydra/help/r1exp.yaml) and `--hydra-help` Hydra's, whatever else the command
line holds (`help_argv`). The jobs of a sweep that run in this process are kept apart (`one_job`): what one leaves in
the environment or in torch.distributed does not make the next one a distributed run.
"""

from __future__ import annotations

import contextlib
import os
import sys

from r1exp.errors import EXIT_OK, EXIT_USAGE

_status = {"code": EXIT_OK}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from r1exp.scale.distributed import route_rank_output

    route_rank_output()  # a rank > 0 of a distributed run writes to <run folder>/rank<N>.log
    from r1exp.checks import preflight
    from r1exp.config.compose import choose_model_by_name

    if any(arg in HELP_FLAGS for arg in argv):  # help, whatever else the line says: nothing is checked or started
        return _hydra(help_argv(argv), preflight.parse(help_argv(argv)))
    cl = preflight.parse(argv)
    chosen = choose_model_by_name(cl.overrides) if cl.config_name == "config" else cl.overrides
    if chosen != cl.overrides:   # model.name_or_path=X alone: model=pretrained
        argv, cl.overrides = [*argv, chosen[-1]], chosen
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


HELP_FLAGS = ("--help", "-h", "--hydra-help")
CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


def help_argv(argv: list[str]) -> list[str]:
    """What Hydra needs to print the help: the help flag and the flags that choose the config (they decide the
    groups it lists). r1exp's help shows no config, so the overrides and -m are left out: Hydra composes the config
    for the help too and would otherwise stop on a sweep's `key=a,b` (it composes one run) or a mistyped option,
    and argparse refuses an override that comes after the flag (`dry_run=true --help hydra.run.dir=X`)."""
    flags, i = [], 0
    while i < len(argv):
        name = argv[i].partition("=")[0]
        if name in CONFIG_FLAGS:
            flags += argv[i:i + 1 if "=" in argv[i] else i + 2]
            i += 1 if "=" in argv[i] else 2
            continue
        i += 1
    wanted = "--hydra-help" if "--hydra-help" in argv else "--help"
    return [wanted, *flags]


def _hydra(argv: list[str], cl) -> int:
    import hydra

    from r1exp.config.compose import CONF_DIR

    # --config-dir adds a folder (sweeps/, a reproduction's saved config) in front of conf/, which stays searchable
    config_path = None if cl.config_path else str(CONF_DIR)

    @hydra.main(config_path=config_path, config_name=cl.config_name, version_base="1.3")
    def hydra_job(cfg):
        from r1exp.run import run, run_dir_of_hydra
        from r1exp.scale.sweep import job_value

        with one_job():
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


# set for vLLM by TRL's in-process engine (and MASTER_PORT by r1exp.run): a run of one process must not leave them
RENDEZVOUS_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def one_job():
    """A job of a sweep that runs in this process leaves nothing distributed to the next one. TRL's in-process vLLM
    engine (engine=vllm) sets RANK, LOCAL_RANK and WORLD_SIZE and vLLM starts a one-process torch.distributed group;
    the next job then read LOCAL_RANK, trained under DDP with one process (DDP's `find_unused_parameters=True was
    specified ...` warning) and had every C++ warning prefixed with `[rank0]:`. After a job of a process that is not
    a launched rank, the environment is put back and a one-process group the job started is ended."""
    saved = {name: os.environ.get(name) for name in RENDEZVOUS_ENV}
    world = saved["WORLD_SIZE"] or "1"
    launched = not world.isdigit() or int(world) > 1 or saved["LOCAL_RANK"] is not None  # a rank of a launcher
    had_group = _process_group() is not None
    try:
        yield
    finally:
        if not launched:
            if not had_group:
                _end_process_group()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _process_group():
    """torch.distributed, when torch is imported and a default process group is up; else None."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    try:
        return dist if dist is not None and dist.is_available() and dist.is_initialized() else None
    except Exception:  # noqa: BLE001 - a half-imported torch: nothing to end
        return None


def _end_process_group() -> None:
    dist = _process_group()
    if dist is None or dist.get_world_size() != 1:
        return
    try:
        state = sys.modules.get("vllm.distributed.parallel_state")
        if state is not None:  # vLLM's groups hold the process group: end them with it
            state.destroy_model_parallel()
            state.destroy_distributed_environment()
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception as e:  # noqa: BLE001 - the job is over; the next one starts its own group
        print(f"r1exp: warning: could not end the job's torch.distributed group: {type(e).__name__}: {e}",
              file=sys.stderr)


def _main() -> int:
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # `python -m r1exp --help | head`: the reader had what it wanted; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit fails quietly
        return 128 + 13  # SIGPIPE, as a shell reports a program its pipe stopped


if __name__ == "__main__":
    sys.exit(_main())
