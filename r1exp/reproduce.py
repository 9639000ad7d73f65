"""`python -m r1exp.reproduce RUN_DIR [overrides]`: run a saved run again and prove it repeats.

    python -m r1exp.reproduce outputs/runs/2026-11-24/10-31-07_default            # a new run of the same config
    python -m r1exp.reproduce outputs/sweeps/2026-11-24/11-00-00_lr_beta/3        # one job of a sweep
    python -m r1exp.reproduce RUN_DIR trainer.max_steps=10                         # the same, with changes
    python -m r1exp.reproduce RUN_DIR resume=true                                  # continue an interrupted run

1. Reads the saved, resolved config as YAML (RUN_DIR/.hydra/config.yaml, or run.json's "config"), never a pickle, and
   only the run's part of it: Hydra's settings (`hydra:` callbacks, launcher, ...) are this installation's. Code the
   config names that is not r1exp's own (a custom reward's `_target_`) is refused before anything is imported unless
   `--allow=module.name` (or `--trust`) says you trust it (r1exp.records.trust).
2. Runs it again through the normal entry point (checked before anything loads) into a NEW run folder:
   outputs/runs/<date>/<time>_<name>_repro, or the `hydra.run.dir=...` given. Overrides change keys of the
   saved config (`engine.enforce_eager=true`); a group swap (`engine=vllm`) belongs to a new run of `python -m r1exp`.
3. Reports drift against the saved manifest: package versions, Python, git commit and dirty flag, device.
4. Compares the new metrics with the saved ones at the steps both runs logged (timings are not compared) and says
   whether the run reproduced: exit 0, or exit 1 naming the first step and metric that differ. The criterion:
   - exact (CPU, where r1exp runs are bit-exact; and a saved run with `reproducible=true`, the deterministic GPU
     mode, rerun with it): every metric equal at every step. `--atol=X` accepts differences up to X.
   - noise (GPU runs without the deterministic mode, whose last bits differ from run to run and whose sampling
     therefore parts after a few steps): "reproduced within noise", or "differs beyond noise at step N in metric M".
     Judged: reward, each rewards/<name>/mean, loss, grad_norm, completions/mean_length; learning_rate and epoch
     must be equal. A judged metric differs beyond noise when one run lies outside the band the other spans over
     the 3 steps either side, by more than 4 x the metric's typical step-to-step change (1.4826 x the median
     |x(t) - x(t-1)| of both runs), at 2 steps in a row. Details and calibration: r1exp.records.verdict.
   `--criterion=exact|noise` overrides the choice. A different number of steps counts as a difference unless the
   overrides change trainer.max_steps / num_train_epochs or the saved run did not finish (the common steps are
   compared, and the report says so). The verdict is written into the new run.json under "reproduction".

resume=true continues an interrupted run IN ITS OWN FOLDER from its last checkpoint (r1exp.records.resume): the metrics go
on from the checkpoint's step, run.json keeps the earlier attempt under "attempts", and the W&B run is resumed.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from r1exp.records import secrets, trust
from r1exp.records.metrics import METRICS_FILE, read_metrics, step_rows
from r1exp.errors import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from r1exp.records.manifest import MANIFEST_FILE, read_manifest, update_manifest
from r1exp.records.verdict import VOLATILE, Comparison, compare, render  # noqa: F401 - VOLATILE: tests filter timings

PRIMARY = "reproduce"
USAGE = ("usage: python -m r1exp.reproduce RUN_DIR [--criterion=exact|noise] [--atol=X] [--allow=TARGET ...] "
         "[--trust] [key=value ...] [resume=true]")
CRITERIA = ("auto", "exact", "noise")
# Overrides after which the new run is expected to log a different number of steps than the saved one.
STEP_COUNT_KEYS = ("trainer.max_steps", "trainer.num_train_epochs")


class UsageError(Exception):
    pass


def saved_config(run_dir: Path) -> dict:
    """The run's resolved config from YAML (.hydra/config.yaml) or, without it, from run.json."""
    from omegaconf import OmegaConf

    hydra_yaml = run_dir / ".hydra" / "config.yaml"
    if hydra_yaml.exists():
        try:
            config = OmegaConf.to_container(OmegaConf.load(hydra_yaml), resolve=False)
        except Exception as e:  # noqa: BLE001 - any YAML or OmegaConf error: the file is damaged
            raise UsageError(f"{hydra_yaml} cannot be read as YAML ({type(e).__name__}: {str(e).splitlines()[0]})\n"
                             f"  fix: restore it, or move it aside to reproduce from {run_dir / MANIFEST_FILE}'s "
                             f"config") from None
        if isinstance(config, dict):
            return config
    if (run_dir / MANIFEST_FILE).exists():
        config = saved_manifest(run_dir).get("config")
        if isinstance(config, dict):
            return config
        raise UsageError(f"{run_dir / MANIFEST_FILE} holds no config and there is no .hydra/config.yaml: "
                         f"nothing to run again")
    raise UsageError(f"{run_dir} holds neither .hydra/config.yaml nor {MANIFEST_FILE}: not an r1exp run folder")


def saved_manifest(run_dir: Path) -> dict:
    """The saved run.json, {} without one; a damaged one (cut short by a full disk or a killed writer) is a usage
    error that says how to go on."""
    path = run_dir / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise UsageError(
            f"{path} is not valid JSON ({getattr(e, 'msg', e)}{where}): the file is damaged or was cut short\n"
            f"  fix: restore it from a backup, or move it aside (mv {path} {path}.damaged) to reproduce from "
            f"{run_dir / '.hydra' / 'config.yaml'} without a drift report") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a JSON object: not an r1exp run.json")
    return data


def saved_metrics(run_dir: Path, out=print) -> list[dict]:
    """The saved per-step rows. A last line cut short (a run killed while writing it) is left out with a note;
    a damaged line before the last is a usage error."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):
                out(f"note: the last line of {path} is cut short (the run was killed while writing it); left out")
                break
            raise UsageError(f"{path} line {number} is not valid JSON ({e.msg}): the metrics file is damaged\n"
                             f"  fix: restore it, or remove that line to compare the other steps") from None
    return step_rows(rows)


def run_state(run_dir: Path, manifest: dict | None = None) -> str:
    """ok | failed | interrupted | running | dead | unknown: run.json's status, except that `running` is believed
    only while the process it names lives (same pid and start time on this host; on another host, a heartbeat
    younger than 150 s). A run folder written before run.json named its process says `running`.
    (A stand-in for r1exp.records.manifest.run_state, which reads the same fields.)"""
    data = saved_manifest(run_dir) if manifest is None else manifest
    status = data.get("status")
    if status not in ("ok", "failed", "interrupted", "running"):
        return "unknown"
    if status != "running":
        return status
    pid, host = data.get("pid"), data.get("host")
    if pid is not None and host == socket.gethostname():
        return "running" if _same_process(int(pid), data.get("pid_started")) else "dead"
    beat = data.get("heartbeat")
    if beat is not None:
        try:
            age = (datetime.now(timezone.utc) - datetime.fromisoformat(beat)).total_seconds()
        except (TypeError, ValueError):
            return "running"
        return "running" if age < 150 else "dead"
    return "running"


def _same_process(pid: int, started: float | None) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return started is None or abs(proc.create_time() - float(started)) < 1.0
    except (psutil.Error, OSError, ValueError):
        return False


def drift(old: dict, new: dict) -> list[str]:
    """What differs between two manifests in what can change results: packages, Python, code, device."""
    lines = []
    old_v, new_v = old.get("versions") or {}, new.get("versions") or {}
    for name in sorted(set(old_v) | set(new_v)):
        if old_v.get(name) != new_v.get(name):
            lines.append(f"{name} {old_v.get(name) or 'absent'} -> {new_v.get(name) or 'absent'}")
    for key in ("python", "device"):
        if old.get(key) != new.get(key):
            lines.append(f"{key} {old.get(key)} -> {new.get(key)}")
    old_git, new_git = old.get("git") or {}, new.get("git") or {}
    fields = ("commit", "dirty", "diff_sha256")
    if [old_git.get(k) for k in fields] != [new_git.get(k) for k in fields]:
        lines.append(f"code {_git(old_git)} -> {_git(new_git)}")
    return lines


def _git(g: dict) -> str:
    commit = (g.get("commit") or "unknown")[:10]
    return f"{commit} (uncommitted changes {g.get('diff_sha256')})" if g.get("dirty") else commit


def trust_flags(argv: list[str]) -> tuple[list[str], tuple, bool]:
    """(the other arguments, the --allow=TARGET values, --trust): what the person running the command lets a
    folder's config import (r1exp.records.trust)."""
    allowed = tuple(a.split("=", 1)[1] for a in argv if a.startswith("--allow="))
    rest = [a for a in argv if a != "--trust" and not a.startswith("--allow=")]
    return rest, allowed, "--trust" in argv


def parse_args(argv: list[str]) -> tuple[Path, list[str], float | None, str]:
    flags = [a for a in argv if a.startswith("-")]
    positional = [a for a in argv if not a.startswith("-") and "=" not in a]
    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    if len(positional) != 1 or any(f.split("=", 1)[0] not in ("--atol", "--criterion") or "=" not in f
                                   for f in flags):
        raise UsageError(USAGE)
    values = dict(f[2:].split("=", 1) for f in flags)
    atol = None
    if "atol" in values:
        try:
            atol = float(values["atol"])
        except ValueError:
            atol = math.nan
        if not (math.isfinite(atol) and atol >= 0):
            raise UsageError(f"--atol={values['atol']}: --atol takes a number >= 0\n{USAGE}")
    criterion = values.get("criterion", "auto")
    if criterion not in CRITERIA:
        raise UsageError(f"--criterion={criterion}: one of {', '.join(CRITERIA)}\n{USAGE}")
    if atol is not None and criterion == "noise":
        raise UsageError(f"--atol applies to the exact criterion, not to --criterion=noise\n{USAGE}")
    run_dir = Path(positional[0])
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder\n{USAGE}")
    return run_dir, overrides, atol, criterion


def choose_criterion(old: dict, new: dict, asked: str = "auto", atol: float | None = None) -> tuple[str, str]:
    """(exact | noise, why). Exact where runs are bit-exact: both on CPU, or both in the deterministic GPU mode
    (`reproducible=true` in the config; absent = false)."""
    if asked != "auto":
        return asked, f"--criterion={asked}"
    if atol is not None:
        return "exact", f"--atol={atol:g}"
    devices = [str(old.get("device") or new.get("device") or ""), str(new.get("device") or "")]  # none saved: same
    if all(d == "cpu" for d in devices):
        return "exact", "both runs on CPU, where r1exp runs are bit-exact"
    if all(bool((m.get("config") or {}).get("reproducible", False)) for m in (old, new)):
        return "exact", "both runs in the deterministic mode (reproducible=true)"
    return "noise", (f"GPU runs without reproducible=true ({' -> '.join(dict.fromkeys(devices))}) are not "
                     f"bit-exact from run to run")


def step_count_note(overrides: list[str], old_state: str) -> str | None:
    """Why the two runs may log a different number of steps, or None when they should log the same."""
    given = [o for o in overrides if o.lstrip("+").split("=", 1)[0] in STEP_COUNT_KEYS]
    if given:
        return f"{given[-1]} was given"
    if old_state not in ("ok", "unknown"):
        return f"the saved run is {old_state}"
    return None


def _wants_resume(overrides: list[str]) -> bool:
    values = [o.split("=", 1)[1].strip().lower() for o in overrides if o.lstrip("+").split("=", 1)[0] == "resume"]
    return bool(values) and values[-1] in ("true", "1", "yes")


def _group_swaps(config: dict, overrides: list[str]) -> list[str]:
    """`group=option` overrides: the saved config is already composed, it has no groups to choose from."""
    swaps = []
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if "." not in key and isinstance(config.get(key), dict) and not value.strip().startswith("{"):
            swaps.append(o)
    return swaps


def _new_run_dir(config: dict, overrides: list[str]) -> str:
    given = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "hydra.run.dir"]
    if given:
        return given[-1]
    now = datetime.now()
    return f"outputs/runs/{now:%Y-%m-%d}/{now:%H-%M-%S}_{config.get('name', 'run')}_repro"


def _write_primary(folder: Path, config: dict) -> None:
    from omegaconf import OmegaConf

    config = dict(config)
    config.setdefault("resume", False)
    config["resume"] = False  # a resumed folder saved resume=true; repeating it starts from step 0 unless asked
    OmegaConf.save(OmegaConf.create(config), folder / f"{PRIMARY}.yaml")


def reproduce(run_dir: Path, overrides: list[str], atol: float | None = None, out=print,
              criterion: str = "auto", allowed: tuple = (), trust_all: bool = False) -> int:
    from r1exp.__main__ import main

    config = trust.config_of_folder(saved_config(run_dir))   # the run's config; Hydra's settings are this install's
    foreign = trust.untrusted_targets(config, allowed, trust_all)
    if foreign:
        raise UsageError(trust.refusal(run_dir, foreign, "python -m r1exp.reproduce"))
    old = saved_manifest(run_dir)
    old_rows = saved_metrics(run_dir, out)
    swaps = _group_swaps(config, overrides)
    if swaps:
        raise UsageError(f"{' '.join(swaps)}: reproduce runs the saved, composed config, which has no groups to "
                         f"choose from.\n  fix: change its keys instead (e.g. engine.name=...), or start a new run: "
                         f"python -m r1exp {' '.join((old.get('hydra') or {}).get('overrides', []) + swaps)}")
    state = run_state(run_dir, old) if old else "unknown"
    resume = _wants_resume(overrides)
    if resume and state == "running" and old.get("pid") is not None:  # a process that is known to live
        raise UsageError(f"{run_dir} is still running (pid {old.get('pid')} on {old.get('host')}): resuming it now "
                         f"would have two processes write one folder\n  fix: stop it first (kill {old.get('pid')} "
                         f"saves a checkpoint), then resume")
    new_dir = str(run_dir) if resume else _new_run_dir(config, overrides)
    if not resume and Path(new_dir).expanduser().resolve() == run_dir.resolve():
        raise UsageError(f"hydra.run.dir={new_dir} is the run being reproduced: a reproduction runs into a new "
                         f"folder and compares the two\n  fix: drop hydra.run.dir (a new folder is made), give "
                         f"another one, or continue the run itself: python -m r1exp.reproduce {run_dir} resume=true")
    hidden = secrets.redacted_keys(config)
    if hidden:
        out(f"warning: {', '.join(hidden)} were redacted when saved; give them again as overrides or through the "
            f"environment (e.g. ${{oc.env:NAME}})")
    described = {"dead": "dead: run.json says running but its process is gone, it was killed without a word",
                 "running": "running: its process still lives, its metrics may grow"}.get(state, state)
    out(f"{'resuming' if resume else 'reproducing'} {run_dir} (status {described}, {len(old_rows)} steps logged)"
        + ("" if resume else f" into {new_dir}"))
    with tempfile.TemporaryDirectory(prefix="r1exp-reproduce-") as folder:
        _write_primary(Path(folder), config)
        rest = [o for o in overrides if o.split("=", 1)[0] != "hydra.run.dir"]
        code = main(["--config-dir", folder, "--config-name", PRIMARY, f"hydra.run.dir={new_dir}", *rest])
    new_path = Path(new_dir)
    if not (new_path / MANIFEST_FILE).exists():
        return code  # stopped before the run started (the reason is printed above)
    new = read_manifest(new_path)
    changes = drift(old, new) if old else ["no manifest saved with the run: drift unknown"]
    out("drift: " + ("none (same packages, Python, code and device)" if not changes else "; ".join(changes)))
    if resume:
        steps = step_rows(read_metrics(new_path))
        out(f"resumed: status {new.get('status')}, steps now {steps[0]['step'] if steps else '-'}"
            f"..{steps[-1]['step'] if steps else '-'}")
        return code
    chosen, why = choose_criterion(old, new, criterion, atol)
    result = compare(old_rows, step_rows(read_metrics(new_path)), chosen, atol or 0.0,
                     step_count_note(overrides, state))
    out(f"criterion: {chosen} ({why})")
    out(render(result, atol or 0.0))
    verdict = code if code != EXIT_OK else (EXIT_OK if result.passed else EXIT_RUNTIME)
    _record(new_path, run_dir, overrides, changes, result, atol, verdict, why)
    return verdict


def _record(new_path: Path, run_dir: Path, overrides, changes, result: Comparison, atol, verdict, why) -> None:
    config_overrides = [o for o in overrides if not o.startswith("hydra.")]
    update_manifest(new_path, reproduction={
        "of": str(run_dir), "overrides": secrets.redact_argv(config_overrides), "drift": changes,
        "criterion": result.criterion, "criterion_why": why, "atol": atol or 0.0,
        "comparison": result.as_dict(), "exit_code": verdict})


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return EXIT_OK
    try:
        argv, allowed, trust_all = trust_flags(argv)
        run_dir, overrides, atol, criterion = parse_args(argv)
        return reproduce(run_dir, overrides, atol, criterion=criterion, allowed=allowed, trust_all=trust_all)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(cli())
