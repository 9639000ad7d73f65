"""Stopping a run cleanly on SIGTERM or Ctrl-C with a checkpoint, and continuing from that checkpoint later.

Stopping: SIGTERM (a cluster preempting or cancelling the job, `kill`) or Ctrl-C (SIGINT).

During training the first signal asks the trainer to finish the current step, save a checkpoint
(`<run_dir>/trainer/checkpoint-<step>`: adapter, optimizer, scheduler, RNG states) and stop; the run is then marked
`interrupted` and exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM). `python -m r1exp.reproduce
RUN_DIR resume=true` continues from that checkpoint. A second signal stops at once (KeyboardInterrupt). Before
training starts (loading, building) a signal stops at once: there is nothing to save yet.

Resuming (`resume: true`): the run continues in its own folder from the last `trainer/checkpoint-<step>`; the lines
metrics.jsonl holds beyond that step are dropped (they are logged again), so the metrics read as one run whose
steps go on from the checkpoint. No checkpoint is a usage error: there is nothing to continue. Nothing of the
earlier attempt is lost: its metrics.jsonl and reward_failures.jsonl are kept whole under `attempts/<k>/` (named in
run.json's `attempts` entry) before anything is cut, so a resume that fails leaves them as they were.

Only a run that is not running any more can be resumed (`claim_attempt`, called by `python -m r1exp` before Hydra
writes into the folder): a live run is refused, a dead one (killed, run.json still `running`) is resumed, and two
resumes of one run started together cannot both go on.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from pathlib import Path


from r1exp.records.metrics import METRICS_FILE, read_metrics, truncate_metrics
from r1exp.errors import ConfigError, Problem

SIGNALS = (signal.SIGINT, signal.SIGTERM)
ATTEMPTS_DIR = "attempts"
# What an attempt leaves that a later attempt in the same folder rewrites or cuts.
ATTEMPT_FILES = (METRICS_FILE, "reward_failures.jsonl")


class GracefulStop:
    """`install()` puts the handlers in place, `restore()` the previous ones; `callback()` is the trainer's side."""

    def __init__(self, signals=SIGNALS):
        self.signals = signals
        self.signum: int | None = None
        self.training = False
        self._saved: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)

    def install(self) -> None:
        """(Re)install the handlers; libraries loaded during the build may have put their own in place."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; a launcher running jobs in threads keeps its own
        for sig in self.signals:
            previous = signal.signal(sig, self._handle)
            self._saved.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
        self._saved.clear()

    def _handle(self, signum, frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if not first or not self.training:
            raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")
        print(f"\nr1exp: {signal.Signals(signum).name} received; saving a checkpoint at the end of this step "
              f"(send it again to stop at once)", flush=True)

    def callback(self):
        """A TrainerCallback: at the end of the step during which a signal came, save a checkpoint and stop."""
        from transformers import TrainerCallback

        stop = self

        class StopOnSignal(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                stop.training = True

            def on_step_end(self, args, state, control, **kwargs):
                from r1exp.machine.processes import any_rank

                if any_rank(stop.requested, args.device):  # every rank stops at the same step
                    stop.signum = stop.signum or signal.SIGTERM
                    control.should_save = True
                    control.should_training_stop = True
                return control

            def on_train_end(self, args, state, control, **kwargs):
                stop.training = False

        return StopOnSignal()


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest trainer/checkpoint-<step> folder of a run, or None (transformers' own search)."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(run_dir) / "trainer"
    found = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    return Path(found) if found else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def prepare_resume(cfg, run_dir: Path, manifest=None) -> Path | None:
    """For resume=true: the checkpoint to continue from, with metrics.jsonl cut back to its step. Else None, and
    metrics.jsonl starts empty (a run started again in the same folder, e.g. a requeued cluster job). Either way the
    earlier attempt's files are kept under attempts/<k>/ first (and named in `manifest`'s last attempt)."""
    if not cfg.get("resume", False):
        if read_metrics(run_dir):
            archive_attempt(run_dir, manifest)
        truncate_metrics(run_dir, after_step=-1)  # a fresh run in a used folder logs its own steps only
        return None
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError([Problem(
            "resume", True, f"there is no checkpoint to continue from in {Path(run_dir) / 'trainer'}",
            "a run saves one when stopped by SIGTERM or Ctrl-C during training (or with trainer.save_strategy=steps);"
            " to run it again from the start use `python -m r1exp.reproduce RUN_DIR` without resume=true",
            rule="resume.checkpoint")])
    archive_attempt(run_dir, manifest)
    truncate_metrics(run_dir, after_step=checkpoint_step(checkpoint))
    return checkpoint


def archive_attempt(run_dir: Path, manifest=None) -> Path | None:
    """Copy the files a new attempt rewrites (metrics, reward failures) to attempts/<k>/; the folder, or None."""
    run_dir = Path(run_dir)
    present = [name for name in ATTEMPT_FILES if (run_dir / name).exists()]
    if not present:
        return None
    root = run_dir / ATTEMPTS_DIR
    k = len(manifest.data.get("attempts") or []) if manifest is not None else 0
    k = max(k, 1)
    while (root / str(k)).exists():
        k += 1
    folder = root / str(k)
    folder.mkdir(parents=True)
    for name in present:
        shutil.copy2(run_dir / name, folder / name)
    if manifest is not None and manifest.data.get("attempts"):
        attempts = [dict(a) for a in manifest.data["attempts"]]
        attempts[-1]["files"] = str(folder.relative_to(run_dir))
        manifest.update(attempts=attempts)
    return folder


