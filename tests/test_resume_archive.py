"""A resume never destroys the earlier attempt: its metrics are kept whole under attempts/<k>/ before metrics.jsonl
is cut back to the checkpoint, and run.json keeps how it ended, even when the resume then fails."""

from __future__ import annotations

import json

from omegaconf import OmegaConf


from r1exp.records import metrics
from r1exp.records.manifest import Manifest
from r1exp.records.resume import prepare_resume


def finished_run_with_checkpoint(run_dir, steps=50, checkpoint=39):
    rows = [{"step": s, "reward": s / 100} for s in range(1, steps + 1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "reward_failures.jsonl").write_text('{"step": 3, "reward": "accuracy"}\n')
    (run_dir / "run.json").write_text(json.dumps({"status": "ok", "exit_code": 0, "metrics": {"steps_logged": steps},
                                                  "host": "elsewhere", "pid": 1}))
    ckpt = run_dir / "trainer" / f"checkpoint-{checkpoint}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": checkpoint}))


def test_a_failed_resume_keeps_the_earlier_attempts_metrics_and_status(tmp_path):
    finished_run_with_checkpoint(tmp_path)
    cfg = OmegaConf.create({"resume": True})
    m = Manifest(tmp_path, {"resume": True}, seed=1, device="cpu", resume=True)
    checkpoint = prepare_resume(cfg, tmp_path, m)
    assert checkpoint.name == "checkpoint-39"
    assert [r["step"] for r in metrics.read_metrics(tmp_path)] == list(range(1, 40))   # goes on from the checkpoint
    m.finish("failed", error="RuntimeError: boom", exit_code=1)

    data = json.loads((tmp_path / "run.json").read_text())
    earlier = data["attempts"][0]
    assert (data["status"], earlier["status"], earlier["metrics"]) == ("failed", "ok", {"steps_logged": 50})
    kept = tmp_path / earlier["files"]
    assert [r["step"] for r in metrics.read_metrics(kept)] == list(range(1, 51))   # all 50 steps, as logged
    assert (kept / "reward_failures.jsonl").read_text() == '{"step": 3, "reward": "accuracy"}\n'


def test_a_second_resume_keeps_both_earlier_attempts(tmp_path):
    finished_run_with_checkpoint(tmp_path)
    for _ in range(2):
        m = Manifest(tmp_path, {"resume": True}, seed=1, device="cpu", resume=True)
        prepare_resume(OmegaConf.create({"resume": True}), tmp_path, m)
        m.finish("failed", exit_code=1)
    data = json.loads((tmp_path / "run.json").read_text())
    assert [a["files"] for a in data["attempts"]] == ["attempts/1", "attempts/2"]
    assert len(metrics.read_metrics(tmp_path / "attempts/1")) == 50
    assert len(metrics.read_metrics(tmp_path / "attempts/2")) == 39
