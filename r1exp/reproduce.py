"""`python -m r1exp.reproduce RUN_DIR [overrides]`: run a saved run again and prove it repeats.

    python -m r1exp.reproduce outputs/runs/2026-11-24/10-31-07_default            # a new run of the same config
    python -m r1exp.reproduce outputs/sweeps/2026-11-24/11-00-00_lr_beta/3        # one job of a sweep
    python -m r1exp.reproduce RUN_DIR trainer.max_steps=10                         # the same, with changes
    python -m r1exp.reproduce RUN_DIR resume=true                                  # continue an interrupted run

1. Reads the saved, resolved config as YAML (RUN_DIR/.hydra/config.yaml, or run.json's "config"), never a pickle.
2. Runs it again through the normal entry point (checked before anything loads) into a NEW run folder:
   outputs/runs/<date>/<time>_<name>_repro, or the `hydra.run.dir=...` given. Overrides change keys of the
   saved config (`engine.enforce_eager=true`); a group swap (`engine=vllm`) belongs to a new run of `python -m r1exp`.
3. Reports drift against the saved manifest: package versions, Python, git commit and dirty flag, device.
4. Compares the new metrics with the saved ones step by step (timings are not compared). On CPU with the same
   versions they are identical; the command says so (exit 0) or shows where they diverge (exit 1). `--atol=X`
   accepts differences up to X (GPU kernels are not bit-exact). The verdict is written into the new run.json under
   "reproduction".

resume=true continues an interrupted run IN ITS OWN FOLDER from its last checkpoint (r1exp.resume): the metrics go
on from the checkpoint's step, run.json keeps the earlier attempt under "attempts", and the W&B run is resumed.
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from r1exp import secrets, tracking
from r1exp.errors import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from r1exp.manifest import MANIFEST_FILE, read_manifest, update_manifest

# Metrics that measure the machine, not the training: never compared.
VOLATILE = re.compile(r"(time|runtime|seconds|per_second|_s$|^profiling/)")
PRIMARY = "reproduce"
USAGE = "usage: python -m r1exp.reproduce RUN_DIR [--atol=X] [key=value ...] [resume=true]"


class UsageError(Exception):
    pass


@dataclass
class Comparison:
    steps_old: int
    steps_new: int
    compared: int = 0
    metrics: list = field(default_factory=list)
    first: dict | None = None              # the first step that differs: {step, diffs: [(key, old, new)]}
    steps_differing: int = 0
    largest: tuple | None = None           # (key, step, |difference|)

    @property
    def identical(self) -> bool:
        return self.first is None and self.steps_old == self.steps_new

    def as_dict(self) -> dict:
        return {"identical": self.identical, "steps_old": self.steps_old, "steps_new": self.steps_new,
                "steps_compared": self.compared, "metrics_compared": self.metrics, "first_divergence": self.first,
                "steps_differing": self.steps_differing, "largest_difference": self.largest}


def saved_config(run_dir: Path) -> dict:
    """The run's resolved config from YAML (.hydra/config.yaml) or, without it, from run.json."""
    from omegaconf import OmegaConf

    hydra_yaml = run_dir / ".hydra" / "config.yaml"
    if hydra_yaml.exists():
        return OmegaConf.to_container(OmegaConf.load(hydra_yaml), resolve=False)
    if (run_dir / MANIFEST_FILE).exists():
        return read_manifest(run_dir)["config"]
    raise UsageError(f"{run_dir} holds neither .hydra/config.yaml nor {MANIFEST_FILE}: not an r1exp run folder")


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


def compare(old_rows: list[dict], new_rows: list[dict], atol: float = 0.0) -> Comparison:
    old, new = tracking.step_rows(old_rows), tracking.step_rows(new_rows)
    result = Comparison(len(old), len(new))
    by_step = {r["step"]: r for r in new}
    for row in old:
        other = by_step.get(row["step"])
        if other is None:
            continue
        result.compared += 1
        keys = sorted(k for k in set(row) | set(other) if k != "step" and not VOLATILE.search(k))
        result.metrics = sorted(set(result.metrics) | set(keys))
        diffs = [(k, row.get(k), other.get(k)) for k in keys if not _same(row.get(k), other.get(k), atol)]
        if diffs:
            result.steps_differing += 1
            if result.first is None:
                result.first = {"step": row["step"], "diffs": diffs}
            for k, a, b in diffs:
                gap = abs(a - b) if _number(a) and _number(b) else math.inf
                if result.largest is None or gap > result.largest[2]:
                    result.largest = (k, row["step"], gap)
    return result


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same(a, b, atol: float) -> bool:
    if _number(a) and _number(b):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= atol
    return a == b


def render(c: Comparison, atol: float) -> str:
    what = "identical" if atol == 0 else f"equal within {atol:g}"
    if c.identical:
        return (f"metrics: {what} at every one of {c.compared} steps ({len(c.metrics)} metrics each; "
                f"timings not compared)")
    lines = []
    if c.steps_old != c.steps_new:
        lines.append(f"metrics: the saved run logged {c.steps_old} steps, the new one {c.steps_new}")
    if c.first is not None:
        lines.append(f"metrics diverge from step {c.first['step']} ({c.steps_differing} of {c.compared} compared "
                     f"steps differ):")
        for key, a, b in c.first["diffs"][:8]:
            lines.append(f"  {key}: {a!r} (saved) vs {b!r} (new)")
        if len(c.first["diffs"]) > 8:
            lines.append(f"  ... and {len(c.first['diffs']) - 8} more metrics")
        key, step, gap = c.largest
        lines.append(f"  largest difference: {key} at step {step}: {gap:.3g}")
    elif c.compared:
        lines.append(f"metrics: {what} at the {c.compared} steps both runs logged")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[Path, list[str], float]:
    flags = [a for a in argv if a.startswith("-")]
    positional = [a for a in argv if not a.startswith("-") and "=" not in a]
    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    if len(positional) != 1 or any(not f.startswith("--atol=") for f in flags):
        raise UsageError(USAGE)
    try:
        atol = float(flags[-1].split("=", 1)[1]) if flags else 0.0
    except ValueError:
        raise UsageError(f"{flags[-1]}: --atol takes a number\n{USAGE}") from None
    run_dir = Path(positional[0])
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder\n{USAGE}")
    return run_dir, overrides, atol


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


def reproduce(run_dir: Path, overrides: list[str], atol: float = 0.0, out=print) -> int:
    from r1exp.__main__ import main

    config = saved_config(run_dir)
    old = read_manifest(run_dir) if (run_dir / MANIFEST_FILE).exists() else {}
    swaps = _group_swaps(config, overrides)
    if swaps:
        raise UsageError(f"{' '.join(swaps)}: reproduce runs the saved, composed config, which has no groups to "
                         f"choose from.\n  fix: change its keys instead (e.g. engine.name=...), or start a new run: "
                         f"python -m r1exp {' '.join((old.get('hydra') or {}).get('overrides', []) + swaps)}")
    resume = _wants_resume(overrides)
    new_dir = str(run_dir) if resume else _new_run_dir(config, overrides)
    hidden = secrets.redacted_keys(config)
    if hidden:
        out(f"warning: {', '.join(hidden)} were redacted when saved; give them again as overrides or through the "
            f"environment (e.g. ${{oc.env:NAME}})")
    out(f"{'resuming' if resume else 'reproducing'} {run_dir} (status {old.get('status', 'unknown')}, "
        f"{len(tracking.step_rows(tracking.read_metrics(run_dir)))} steps logged)"
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
        steps = tracking.step_rows(tracking.read_metrics(new_path))
        out(f"resumed: status {new.get('status')}, steps now {steps[0]['step'] if steps else '-'}"
            f"..{steps[-1]['step'] if steps else '-'}")
        return code
    result = compare(tracking.read_metrics(run_dir), tracking.read_metrics(new_path), atol)
    out(render(result, atol))
    verdict = code if code != EXIT_OK else (EXIT_OK if result.identical else EXIT_RUNTIME)
    _record(new_path, run_dir, overrides, changes, result, atol, verdict)
    return verdict


def _record(new_path: Path, run_dir: Path, overrides, changes, result, atol, verdict) -> None:
    config_overrides = [o for o in overrides if not o.startswith("hydra.")]
    update_manifest(new_path, reproduction={
        "of": str(run_dir), "overrides": secrets.redact_argv(config_overrides), "drift": changes, "atol": atol,
        "comparison": result.as_dict(), "exit_code": verdict})


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return EXIT_OK
    try:
        run_dir, overrides, atol = parse_args(argv)
        return reproduce(run_dir, overrides, atol)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(cli())
