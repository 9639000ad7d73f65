"""Every run gets a folder of its own: claimed atomically before Hydra writes anything into it.

`python -m r1exp` resolves the run folder (hydra.run.dir; hydra.sweep.dir for -m) itself, claims it, and hands
Hydra the claimed path as a plain string, so Hydra, r1exp and submitit's job processes all use that one folder:

- A folder made from a pattern (the default `outputs/runs/<date>/<time>_<name>`, or any hydra.run.dir with an
  interpolation) is claimed by creating CLAIM_FILE in it with O_EXCL; when another run holds it (two runs of the
  same name in the same second), the next free `<folder>_2`, `<folder>_3`, ... is claimed instead.
- A folder named literally (`hydra.run.dir=PATH`) is claimed if it is new or empty; one that already holds a run
  (or a sweep) is never reused: the command stops with exit status 2 and says how to repeat or continue that run.
- `resume=true` is the one deliberate reuse: the folder must hold a run that is not running any more
  (r1exp.records.resume.resumable), and each attempt claims `CLAIM_FILE.resume<k>` with O_EXCL, so two resumes of one run
  cannot both start.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from r1exp.errors import ConfigError, Problem, render_problems

CLAIM_FILE = ".r1exp-claim"
# What makes a folder a used run (or sweep) folder: r1exp's and Hydra's own files.
RUN_MARKERS = (CLAIM_FILE, "run.json", "metrics.jsonl", ".hydra", "multirun.yaml")
MAX_SUFFIX = 1000
_last: dict = {}


@dataclass
class Claim:
    """The command line with the claimed folder in it; on leaving, a folder no run started in is given back."""

    argv: list
    folder: Path | None = None
    key: str = "hydra.run.dir"
    fresh: bool = False   # claimed by this command (not a resumed run's folder)
    created: list = field(default_factory=list)   # folders this claim made (removed again if left empty)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        if self.folder is None or not self.fresh or _started(self.folder):
            return
        (self.folder / CLAIM_FILE).unlink(missing_ok=True)   # Hydra stopped before any run began
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break


def claim(argv: list[str], cl) -> Claim | None:
    """Claim the folder the command line will run in; None (the reason printed, exit 2) when it cannot be had."""
    try:
        return _claim(argv, cl)
    except ConfigError as e:
        print(render_problems(e.problems), file=sys.stderr)
        print("\nnothing was started.", file=sys.stderr)
        return None


def last_claimed() -> Path | None:
    """The folder the last command of this process claimed (a caller that passed a pattern learns where it ran)."""
    return _last.get("folder")


def _claim(argv: list[str], cl) -> Claim:
    key = "hydra.sweep.dir" if cl.multirun else "hydra.run.dir"
    pattern, path, resume = _resolve(cl, key)
    if pattern is None:  # not resolvable here: leave it to Hydra, as before
        return Claim(list(argv))
    folder = Path(path).expanduser()
    if _rank_of(folder):  # a rank of a distributed run: the launching process claimed this folder for it
        return Claim(list(argv))
    if resume and not cl.multirun:

        claim_attempt(folder)
        result = Claim(_with(argv, key, folder), folder, key, fresh=False)
    else:
        literal = "${" not in pattern
        folder, created = (_claim_literal(folder, key) if literal else _claim_free(folder, key))
        result = Claim(_with(argv, key, folder), folder, key, fresh=True, created=created)
    _last["folder"] = result.folder
    return result


def _rank_of(folder: Path) -> bool:
    """This process is a rank that r1exp.scale.distributed launched into `folder`, which its launcher already claimed."""
    import os

    from r1exp.machine.processes import RUN_DIR_ENV

    shared = os.environ.get(RUN_DIR_ENV)
    return bool(shared) and Path(shared).resolve() == folder.resolve()


def _resolve(cl, key: str) -> tuple[str | None, str | None, bool]:
    """(the folder as written, the folder resolved, resume) for this command line."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from r1exp.config.compose import compose, job_overrides

    own = job_overrides(_fixed(cl), cl.multirun)[0]
    hydra_own = [o for o in _fixed(cl) if o.lstrip("+~").startswith("hydra.")]
    previous = HydraConfig.instance().cfg
    try:
        cfg = compose(own + hydra_own, cl.config_name, cl.config_dir or cl.config_path, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)   # for ${hydra:...} in the folder's pattern
        written = OmegaConf.to_container(cfg.hydra, resolve=False)[key.split(".")[1]]["dir"]
        return str(written), str(OmegaConf.select(cfg, key)), bool(cfg.get("resume", False))
    except Exception:  # noqa: BLE001 - preflight composed this command line; Hydra reports anything else itself
        return None, None, False
    finally:
        HydraConfig.instance().cfg = previous


def _fixed(cl) -> list[str]:
    """The overrides without swept values (a sweep's folder does not depend on them)."""
    if not cl.multirun:
        return list(cl.overrides)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(cl.overrides))
    return [text for text, ov in zip(cl.overrides, parsed) if not ov.is_sweep_override()]


def _claim_free(folder: Path, key: str) -> tuple[Path, list]:
    """The folder, or the first free `<folder>_<n>`."""
    for n in range(1, MAX_SUFFIX + 1):
        candidate = folder if n == 1 else folder.with_name(f"{folder.name}_{n}")
        created = _make(candidate, key)
        if _take(candidate):
            return candidate, created
    raise ConfigError([Problem(key, str(folder), f"{MAX_SUFFIX} folders named like it are taken",
                               f"give the run another name: name=... or {key}=PATH", rule="run_folder.claim")])


def _claim_literal(folder: Path, key: str) -> tuple[Path, list]:
    created = _make(folder, key)
    if _take(folder):
        return folder, created
    what = "sweep" if key == "hydra.sweep.dir" else "run"
    fix = (f"leave {key} out (a new dated folder is made for every run), or give a new folder: {key}=PATH. "
           f"To repeat that run: python -m r1exp.reproduce {folder}; to continue it from its last checkpoint: "
           f"python -m r1exp.reproduce {folder} resume=true")
    if what == "sweep":
        fix = f"leave {key} out (a new dated folder is made for every sweep), or give a new folder: {key}=PATH"
    raise ConfigError([Problem(key, str(folder), f"{folder} already holds a {what}: r1exp never writes a new {what} "
                               f"over an earlier one", fix, rule="run_folder.taken")])


def _make(folder: Path, key: str) -> list:
    """Create the folder and its missing parents; the ones created, outermost first."""
    missing = []
    try:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = f"cannot create it: {e.strerror}"
        fix = f"choose a writable folder: {key}=PATH"
        if e.errno == errno.ENAMETOOLONG:
            why = "cannot create it: the folder name is too long for the file system"
            fix = f"use a shorter name= (the folder is named <time>_<name>), or {key}=PATH"
        raise ConfigError([Problem(key, str(folder), why, fix, rule="run_folder.create")]) from None
    if not folder.is_dir():
        raise ConfigError([Problem(key, str(folder), "it is a file, not a folder", f"{key}=PATH",
                                   rule="run_folder.create")])
    return list(reversed(missing))


def _take(folder: Path) -> bool:
    """Atomically make the folder this process's: False when it is used or another process got there first."""
    return not used(folder) and take_file(folder / CLAIM_FILE)


def used(folder: Path) -> bool:
    """The folder holds a run or a sweep (or is claimed by one)."""
    folder = Path(folder)
    if any((folder / name).exists() for name in RUN_MARKERS):
        return True
    return any((child / name).exists() for child in _children(folder) for name in ("run.json", ".hydra"))


def _children(folder: Path) -> list:
    try:
        return [c for c in folder.iterdir() if c.is_dir()]
    except OSError:
        return []


def owner() -> dict:
    from r1exp.records.manifest import now

    return {"pid": os.getpid(), "host": socket.gethostname(), "time": now()}


def take_file(path: Path) -> bool:
    """Create `path` with O_EXCL (holding this process's pid, host and time); False when it already exists."""
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise _unwritable(path, e) from None
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(owner(), f)
    except OSError as e:   # a full disk: the claim is given back, nothing was started
        path.unlink(missing_ok=True)
        raise _unwritable(path, e) from None
    return True


def _unwritable(path: Path, e: OSError) -> ConfigError:
    from r1exp.errors import disk_full_reason

    folder = Path(path).parent
    why = disk_full_reason(e, path) or f"cannot write {path}: {e.strerror or e}"
    return ConfigError([Problem("hydra.run.dir", str(folder), why,
                                "free space on that disk, or give a folder on another one: hydra.run.dir=PATH",
                                rule="run_folder.create")])


def _started(folder: Path) -> bool:
    return (folder / "run.json").exists() or (folder / "multirun.yaml").exists() or bool(_children(folder))


def _with(argv: list[str], key: str, folder: Path) -> list[str]:
    """The command line with `key` set to the claimed folder, quoted for Hydra's override grammar."""
    rest = [a for a in argv if a.lstrip("+~").partition("=")[0] != key]
    return rest + [f"{key}={quote(str(folder))}"]


def quote(text: str) -> str:
    """A value for Hydra's override grammar that reads back as exactly `text` (no interpolation, no escapes)."""
    import re

    # backslashes before a quote or at the end are doubled, quotes escaped, interpolations escaped
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m[1] * 2, text).replace("'", "\\'").replace("${", "\\${")
    return f"'{escaped}'"


def claim_attempt(run_dir: Path) -> None:
    """resume=true: make this attempt the one that continues the run in `run_dir`, or raise ConfigError (exit 2).

    The folder must hold a run (run.json) that is not running any more (`r1exp.records.manifest.run_state`: ok, failed,
    interrupted or dead); the attempt is claimed with O_EXCL, so of two resumes started together one goes on."""
    from r1exp.records.manifest import MANIFEST_FILE, describe_owner, read_manifest, run_state

    run_dir = Path(run_dir)
    again = f"python -m r1exp.reproduce {run_dir} resume=true"
    if not (run_dir / MANIFEST_FILE).exists():
        raise ConfigError([Problem("resume", True, f"{run_dir} holds no run to continue (no {MANIFEST_FILE})",
                                   "give the folder of an interrupted run: python -m r1exp.reproduce RUN_DIR "
                                   "resume=true; without resume=true a new run starts", rule="resume.folder")])
    state = run_state(run_dir)
    if state == "unknown":
        raise ConfigError([Problem("resume", True, f"{run_dir / MANIFEST_FILE} cannot be read (cut short or not "
                                   "JSON): r1exp cannot tell which run this is", "repeat the run from its saved "
                                   f"config instead: python -m r1exp.reproduce {run_dir}", rule="resume.folder")])
    if state == "running":
        raise ConfigError([Problem("resume", True, f"the run in {run_dir} is still running ({describe_owner(run_dir)})",
                                   "wait for it to end, or stop it with SIGTERM (it saves a checkpoint), then: "
                                   + again, rule="resume.running")])
    if not any((c / "trainer_state.json").is_file() for c in (run_dir / "trainer").glob("checkpoint-*")):
        raise ConfigError([Problem("resume", True, f"there is no checkpoint to continue from in {run_dir / 'trainer'} "
                                   f"(the run is {state})", "a run saves one when stopped by SIGTERM or Ctrl-C during "
                                   "training (or with trainer.save_strategy=steps); to run it again from the start: "
                                   f"python -m r1exp.reproduce {run_dir}", rule="resume.checkpoint")])
    attempt = len(read_manifest(run_dir).get("attempts") or []) + 1
    if not take_file(run_dir / f"{CLAIM_FILE}.resume{attempt}"):
        raise ConfigError([Problem("resume", True, f"another resume of {run_dir} has already started", "let that one run; look at it with: cat "
                                   f"{run_dir / MANIFEST_FILE}", rule="resume.running")])
