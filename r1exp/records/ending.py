"""How a run's record ends, whatever ended it: the last run.json write that never raises, and what a full disk left
half-written removed (an adapter without its weights, a completions table or checkpoint cut short, W&B's last
record). r1exp.run calls these from its except/finally blocks, so that its body stays the flow of a run."""

from __future__ import annotations

import sys
from pathlib import Path

from r1exp.errors import EXIT_RUNTIME, disk_full_reason
from r1exp.observe import tracking
from r1exp.records.manifest import Manifest


def end(manifest: Manifest, clock, status: str, metrics: dict | None = None, **fields) -> None:
    """The run's last record in run.json, with the phases (`phases.last`: where it ended). Never raises: when
    run.json cannot be written at all, one line on stderr says so (run.json then keeps `running`, and run_state
    reads it as `dead` once this process is gone)."""
    try:
        manifest.finish(status, metrics, phases=clock.stop(), **fields)
    except Exception as e:  # noqa: BLE001 - the end of a run must not fail here
        unrecorded(manifest, e)


def record(manifest: Manifest, **fields) -> None:
    try:
        manifest.update(**fields)
    except Exception as e:  # noqa: BLE001
        unrecorded(manifest, e)


def unrecorded(manifest: Manifest, e: BaseException) -> None:
    if manifest.data.get("unrecorded"):
        return   # said once
    manifest.data["unrecorded"] = True
    reason = disk_full_reason(e, manifest.path) or f"{type(e).__name__}: {e}"
    print(f"r1exp: could not record the end of the run in {manifest.path}: {reason}", file=sys.stderr)


def not_started(run_dir: Path, e: OSError) -> int:
    """Not even the run's first record could be written (a full or read-only disk): one line, exit status 1."""
    reason = disk_full_reason(e, run_dir) or f"{type(e).__name__}: {e}"
    print(f"r1exp: the run could not start in {run_dir}: {reason}", file=sys.stderr)
    return EXIT_RUNTIME


def being_written(run_dir: Path, phase: str) -> Path:
    """What a phase writes, for a disk-full message whose exception names no file (safetensors, pyarrow)."""
    return {"save": run_dir / "adapter", "train": run_dir / "trainer"}.get(phase, run_dir)


def discard_partial(run_dir: Path) -> None:
    """After a full disk: what a write cut short left behind and no reader could use: an adapter without its
    weights, a completions table or a checkpoint that was not finished."""
    import shutil

    adapter = run_dir / "adapter"
    if adapter.is_dir() and not _readable_safetensors(adapter / "adapter_model.safetensors"):
        shutil.rmtree(adapter, ignore_errors=True)
    for table in (run_dir / "trainer").glob("completions/*.parquet"):
        if not _readable_parquet(table):
            table.unlink(missing_ok=True)
    for checkpoint in (run_dir / "trainer").glob("checkpoint-*"):
        if checkpoint.is_dir() and not (checkpoint / "trainer_state.json").is_file():
            shutil.rmtree(checkpoint, ignore_errors=True)
    if not _readable_png(run_dir / tracking.CURVE_FILE):
        (run_dir / tracking.CURVE_FILE).unlink(missing_ok=True)
    for table in run_dir.glob("wandb/*/files/media/**/*.json"):
        if not _readable_json(table):
            table.unlink(missing_ok=True)
    for log in run_dir.glob("wandb/*/run-*.wandb"):
        try:
            from r1exp.records.wandb_offline import trim_partial

            trim_partial(log)
        except Exception:  # noqa: BLE001 - W&B's own file; the run's record does not depend on it
            pass


def _readable_json(path: Path) -> bool:
    import json

    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def _readable_safetensors(path: Path) -> bool:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            list(f.keys())
        return True
    except Exception:  # noqa: BLE001 - missing or cut short
        return False


def _readable_parquet(path: Path) -> bool:
    try:
        import pyarrow.parquet as pq

        pq.read_metadata(path)
        return True
    except Exception:  # noqa: BLE001
        return False


def _readable_png(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return True   # nothing there
    return data.startswith(b"\x89PNG") and data.rstrip(b"\0").endswith(b"IEND\xaeB`\x82")
