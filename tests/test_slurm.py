"""Sweeps on a real SLURM cluster: `python -m r1exp -m hydra/launcher=slurm ...` submits the sweep as a job array
through hydra-submitit-launcher, the jobs train on the cluster's node, and the sweep ends with summary.md/.csv/.png.
Resources the cluster cannot give stop the sweep before anything is submitted (sbatch --test-only), exit 2.

The cluster is real: Debian's slurmctld, slurmd and munged, started for this module on this machine
(tests/slurm_cluster.py) and stopped after it. The module is skipped, saying why, only where SLURM is not installed
(.ci/run installs it) or the tests do not run as root.
"""

from __future__ import annotations

import csv
import os

import pytest

from conftest import run_cli
from r1exp import __main__ as entry
from r1exp.records.manifest import read_manifest
from slurm_cluster import Cluster, missing

# What one job may ask of the test cluster's node (2 CPUs here, no GPU): the settings a user sets once for a cluster
NODE = ["hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20"]
# ... kept in a launcher config of the user's own, as README "Scaling out" says
CLUSTER_FILE = """\
defaults:
  - slurm
partition: debug
gpus_per_node: null
cpus_per_task: 1
mem_gb: 1
timeout_min: 20
"""
# few, small steps: the sweep shows the jobs run on the cluster, not that the tiny model learns
SMALL = ["engine=hf", "trainer.max_steps=3", "trainer.per_device_train_batch_size=8", "trainer.num_generations=4"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing()
    if reason:
        pytest.skip(reason)
    started = Cluster(tmp_path_factory.mktemp("slurm")).start()
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(started.conf)  # sbatch, squeue and submitit find the test cluster through it
    try:
        yield started
    finally:
        started.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def sweep(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_sweep")
    (root / "conf" / "hydra" / "launcher").mkdir(parents=True)
    (root / "conf" / "hydra" / "launcher" / "testcluster.yaml").write_text(CLUSTER_FILE)
    sweep_dir = root / "sweep"
    result = run_cli(["-m", "--config-dir", str(root / "conf"), "hydra/launcher=testcluster", *SMALL,
                      "trainer.learning_rate=1e-3,2e-3", "logger=none", f"hydra.sweep.dir={sweep_dir}"], sweep_dir,
                     timeout=900)
    assert result.code == 0, result.output[-4000:] + "\n" + cluster.logs()
    cluster.drain()
    return result


def test_a_sweep_runs_as_a_slurm_job_array(sweep, cluster):
    facts = [read_manifest(sweep.run_dir / str(n))["slurm"] for n in (0, 1)]
    assert all(f and f["node"] == cluster.host and f["partition"] == "debug" for f in facts), facts
    assert facts[0]["array_job_id"] == facts[1]["array_job_id"]           # one array ...
    assert sorted(f["array_task_id"] for f in facts) == ["0", "1"]         # ... of two tasks
    assert len(list((sweep.run_dir / ".submitit").glob("*/*_log.out"))) == 2  # submitit's per-job logs


def test_the_slurm_sweep_ends_with_its_summary(sweep):
    for name in ("summary.md", "summary.csv", "summary.png"):
        assert (sweep.run_dir / name).exists(), name
    with (sweep.run_dir / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["trainer.learning_rate"], r["status"], r["steps_logged"]) for r in rows] == [
        ("0", "0.001", "ok", "3"), ("1", "0.002", "ok", "3")]
    assert "sweep: 2/2 jobs ok" in sweep.output


@pytest.fixture
def refuse_to_run(monkeypatch):
    """Should the preflight let a refused sweep through, fail at once instead of submitting."""
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: 99)


@pytest.mark.parametrize("overrides,key", [
    (["hydra.launcher.partition=gpu"], "hydra.launcher.partition"),
    (["hydra.launcher.gpus_per_node=1"], "hydra.launcher.gpus_per_node"),   # conf/hydra/launcher/slurm.yaml's default
    (["hydra.launcher.cpus_per_task=512"], "hydra.launcher"),
    (["hydra.launcher.constraint=h100"], "hydra.launcher.constraint"),
])
def test_resources_the_cluster_cannot_give_stop_the_sweep_before_submitting(overrides, key, cluster, capsys,
                                                                             tmp_path, refuse_to_run):
    args = ["-m", "hydra/launcher=slurm", *NODE, *overrides, "logger=none", "trainer.learning_rate=1e-3,2e-3",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    submitted = cluster.submissions()
    code = entry.main(args)
    text = "".join(capsys.readouterr())
    assert code == 2, text
    assert f"error [slurm.resources]: {key} = " in text and "sbatch refuses" in text and "fix: " in text
    assert "nothing was submitted" in text and "Traceback" not in text
    assert not (tmp_path / "sweep").exists()
    assert cluster.submissions() == submitted  # slurmctld received no job


def test_a_dry_run_reports_a_refusal_as_a_warning(cluster, capsys, refuse_to_run):
    code = entry.main(["-m", "hydra/launcher=slurm", *NODE, "hydra.launcher.partition=gpu", "logger=none",
                       "trainer.learning_rate=1e-3,2e-3", "dry_run=true"])
    text = "".join(capsys.readouterr())
    assert code == 0, text
    assert "warning [slurm.resources]: hydra.launcher.partition = 'gpu'" in text


def test_without_sbatch_a_slurm_sweep_says_where_to_run_it(capsys, monkeypatch, tmp_path, refuse_to_run):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on this PATH
    code = entry.main(["-m", "hydra/launcher=slurm", "logger=none", "trainer.learning_rate=1e-3,2e-3"])
    text = "".join(capsys.readouterr())
    assert code == 2, text
    assert "error [slurm.sbatch]: hydra/launcher = 'slurm'" in text and "login node" in text


@pytest.mark.slow
def test_a_distributed_run_as_a_slurm_job(cluster, tmp_path):
    """distributed=ddp inside a SLURM job: the job relaunches itself under accelerate on its node (2 CPUs)."""
    sweep_dir = tmp_path / "sweep"
    result = run_cli(["-m", "hydra/launcher=slurm", *NODE, "hydra.launcher.cpus_per_task=2", *SMALL,
                      "distributed=ddp", "distributed.num_processes=2", "logger=none",
                      f"hydra.sweep.dir={sweep_dir}"], sweep_dir, timeout=900)
    assert result.code == 0, result.output[-4000:]
    manifest = read_manifest(sweep_dir / "0")
    assert manifest["status"] == "ok" and manifest["distributed"]["world_size"] == 2
    assert manifest["slurm"]["node"] == cluster.host and manifest["hydra"]["job_num"] == 0
    assert (sweep_dir / "0" / "rank1.log").exists() and (sweep_dir / "summary.md").exists()


def test_without_a_cluster_sbatch_says_so_and_the_sweep_stops(capsys, monkeypatch, tmp_path, refuse_to_run):
    if missing():
        pytest.skip(missing())
    (tmp_path / "slurm.conf").write_text("")  # sbatch is here; no cluster is configured
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    code = entry.main(["-m", "hydra/launcher=slurm", *NODE, "logger=none", "trainer.learning_rate=1e-3,2e-3"])
    text = "".join(capsys.readouterr())
    assert code == 2, text
    assert "error [slurm.resources]: hydra/launcher = 'slurm'" in text and "login node" in text
