"""A full disk ends a run with a record that says so: run.json `failed` with the phase and `disk full: ...`, exit
status 1, one line on the console instead of tracebacks, no temporary file left, nothing half-written.

The run folder is a real small file system: a tmpfs mounted in a user namespace (`unshare -rm`, no root needed),
sized 64 KiB, 256 KiB and 512 KiB. The CLI runs inside that namespace and the folder is copied out before the
namespace (and the mount) goes away. Without user namespaces these tests are skipped.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_userns = pytest.mark.skipif(not _namespaces_work(), reason="user namespaces are not allowed here")


def on_small_fs(tmp_path: Path, size: str, command: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `command` with MNT (in its arguments, replaced) a fresh tmpfs of `size`; MNT/run is copied to
    tmp_path/run afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = tmp_path / "run"
    inner = " ".join(shlex.quote(a.replace("MNT", str(mnt))) for a in command)
    script = (f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(mnt))} || exit 99\n"
              f"{inner}\nrc=$?\n"
              f"[ -d {shlex.quote(str(mnt / 'run'))} ] && cp -a {shlex.quote(str(mnt / 'run'))} {shlex.quote(str(out))}\n"
              "exit $rc\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)
    assert proc.returncode != 99, proc.stderr
    return proc


def unreadable_files(run_dir: Path) -> list[str]:
    """The files of a run folder that a reader cannot read as what their name says (cut short by the disk)."""
    bad = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            elif path.suffix in (".yaml", ".yml"):
                import yaml

                yaml.safe_load(path.read_text())
            elif path.suffix == ".parquet":
                import pyarrow.parquet as pq

                pq.read_table(path)
            elif path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as f:
                    list(f.keys())
            elif path.suffix == ".wandb":
                from r1exp.records.wandb_offline import _records

                list(_records(path))
        except Exception as e:  # noqa: BLE001
            bad.append(f"{path.relative_to(run_dir)}: {type(e).__name__}: {e}")
    return bad


@needs_userns
@pytest.mark.parametrize("size", ["64k", "256k", "512k"])
def test_a_run_on_a_full_disk_ends_with_a_clean_failed_record(tmp_path, size):
    proc = on_small_fs(tmp_path, size, [sys.executable, "-m", "r1exp", "trainer.max_steps=2", "hydra.run.dir=MNT/run"])
    output = proc.stdout + proc.stderr
    run_dir = tmp_path / "run"
    assert "Traceback" not in output, output[-4000:]
    assert proc.returncode in (0, 1, 2), output[-3000:]
    if proc.returncode == 2:   # refused before anything started: nothing that looks like a run
        assert "nothing was started" in output and not (run_dir / "run.json").exists()
        return
    manifest = json.loads((run_dir / "run.json").read_text())
    if proc.returncode == 0:
        assert manifest["status"] == "ok"
    else:
        assert manifest["status"] == "failed" and manifest["exit_code"] == 1, manifest
        assert manifest["error"].startswith("disk full: no space left on device writing "), manifest["error"]
        assert manifest["phases"]["last"] in ("checks", "build", "train", "save"), manifest.get("phases")
        assert f"r1exp: the run failed during {manifest['phases']['last']}: disk full" in proc.stderr
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp") or p.name == ".run.json.reserve"]
    assert leftovers == []
    bad = unreadable_files(run_dir)
    r1exp_files = [b for b in bad if ".wandb:" not in b]
    assert r1exp_files == []
    if bad:   # the W&B service process writes its log itself, and at times after r1exp cut it back
        pytest.xfail(f"W&B's own run log ends mid-record: {bad}")


MANIFEST_ON_A_FULL_DISK = """
import json, os, sys
from pathlib import Path
from r1exp.records.manifest import Manifest, RESERVE_FILE
run = Path(sys.argv[1]) / "run"
run.mkdir()
manifest = Manifest(run, {"model": {"name": "m"}}, seed=1, device="cpu")
reserved = manifest.reserve.held
if sys.argv[2] == "no-reserve":
    manifest.reserve.release()
with open(Path(sys.argv[1]) / "filler", "wb", buffering=0) as f:   # fill the disk to the last byte
    for chunk in (b"x" * 4096, b"x"):
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
manifest.finish("failed", error="disk full: no space left on device writing somewhere", exit_code=1,
                phases={"last": "train"})
manifest.update(wandb_url=None)   # the run's finally block writes once more
manifest.close()
print(json.dumps({"reserved": reserved, "files": sorted(os.listdir(run))}))
"""


@needs_userns
@pytest.mark.parametrize("mode", ["reserve", "no-reserve"])
def test_run_json_says_failed_on_a_disk_without_a_free_byte(tmp_path, mode):
    """The last record is written with the reserve given back, or, without one, in place over the old record."""
    script = tmp_path / "full.py"
    script.write_text(MANIFEST_ON_A_FULL_DISK)
    proc = on_small_fs(tmp_path, "256k", [sys.executable, str(script), "MNT", mode], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["status"] == "failed" and manifest["exit_code"] == 1 and "disk full" in manifest["error"]
    assert manifest["phases"] == {"last": "train"} and manifest["end"]
    assert facts["files"] == ["run.json"], facts   # no temporary file, no reserve left
    if mode == "reserve":
        assert facts["reserved"] >= 4096


def test_in_place_record_drops_detail_rather_than_lie(tmp_path):
    """No room at all beyond run.json's own blocks: a record that does not fit compact loses its longest fields
    (named under `trimmed`) but still says how the run ended."""
    from r1exp.records.manifest import _overwrite

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"status": "running", "padding": "x" * 3000}))
    room = max(path.stat().st_size, path.stat().st_blocks * 512)
    data = {"status": "failed", "exit_code": 1, "error": "disk full", "config": {"x": "y" * room},
            "versions": {"a": "b" * 100}}
    _overwrite(path, data)
    written = json.loads(path.read_text())
    assert written["status"] == "failed" and written["error"] == "disk full"
    assert "config" in written["trimmed"] and "config" not in written


def test_no_temporary_file_is_left_when_run_json_cannot_be_written(tmp_path, monkeypatch):
    import errno

    from r1exp.records import manifest as m

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"status": "running"}))

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(m.Path, "replace", full)
    with pytest.raises(OSError):
        m._write(path, {"status": "running", "x": 1}, None, in_place=False)   # a heartbeat: raises, no fallback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    m._write(path, {"status": "failed", "error": "disk full"})    # the last record: in place
    assert json.loads(path.read_text())["status"] == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


@pytest.mark.parametrize("exc,full", [
    (OSError(28, "No space left on device", "/x/metrics.jsonl"), True),
    (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"), True),
    (OSError(13, "Permission denied"), False),
    (ValueError("bad value"), False),
])
def test_disk_full_is_told_from_other_errors(exc, full):
    from r1exp.errors import disk_full_reason

    reason = disk_full_reason(exc, "/tmp")
    assert (reason is not None) == full
    if full:
        assert reason.startswith("disk full: no space left on device writing ")
        if isinstance(exc, OSError):
            assert "/x/metrics.jsonl" in reason


def test_a_disk_full_raised_while_handling_another_error_is_found():
    from r1exp.errors import is_disk_full

    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("saving failed")
    except RuntimeError as e:
        assert is_disk_full(e)


METRICS_ON_A_FULL_DISK = """
import sys
from pathlib import Path
from r1exp.observe.tracking import append_line
path = Path(sys.argv[1]) / "metrics.jsonl"
first = '{"step": 1, "pad": "' + "x" * 4060 + '"}\\n'
append_line(path, first)   # all but a few bytes of one page
with open(Path(sys.argv[1]) / "filler", "wb", buffering=0) as f:
    try:
        while True:
            f.write(b"x" * 4096)
    except OSError:
        pass
try:
    append_line(path, '{"step": 2, "reward": 0.5, "more": "' + "y" * 200 + '"}\\n')   # fits only in part
    print("written")
except OSError:
    print("refused")
print(path.read_text() == first)
"""


@needs_userns
def test_metrics_line_is_whole_or_absent(tmp_path):
    """A metrics.jsonl line the disk cuts short is taken back: the file keeps whole lines only."""
    script = tmp_path / "metrics.py"
    script.write_text(METRICS_ON_A_FULL_DISK)
    proc = on_small_fs(tmp_path, "64k", [sys.executable, str(script), "MNT"], timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["refused", "True"], proc.stdout
