"""When a run evaluates (conf/eval/: before the first step, every N steps, after the last) and where the scores
go: metrics.jsonl rows under `eval/`, W&B, the console, and run.json's `eval` block (baseline, steps, final)."""

from __future__ import annotations

import json
from pathlib import Path

from r1exp.evaluation import heldout
from r1exp.evaluation.evaluator import Evaluator, Settings
from r1exp.records.metrics import METRICS_FILE


class Evaluations:
    """The evaluations of one run, as a transformers TrainerCallback (`callback`), and their record (`block`)."""

    def __init__(self, cfg, trainer, reward_funcs, run_dir: Path, on_record=None, log=print):
        from r1exp.data.tags import configured

        e = cfg.eval
        rows = heldout.heldout_rows(cfg, int(e.prompts))
        self.settings = Settings.of(cfg)
        self.evaluator = Evaluator(trainer, reward_funcs, rows, self.settings, configured(cfg.data.get("tags")))
        self.every = int(e.get("every_steps") or 0)
        self.want_baseline, self.want_final = bool(e.get("baseline", True)), bool(e.get("final", True))
        self.run_dir, self.on_record, self.log = Path(run_dir), on_record, log
        repeated = heldout.overlap(rows, trainer.train_dataset["prompt"]) if trainer.train_dataset else 0
        self.block = {"set": {"source": heldout.source_of(cfg), "prompts": len(rows), "overlap": repeated,
                              "k": self.settings.k, "temperature": self.settings.temperature,
                              "max_tokens": self.settings.max_tokens}, "steps": []}
        if repeated:
            log(f"held-out: {repeated} of {len(rows)} prompts also ask a training question ({heldout.source_of(cfg)})")

    def run(self, kind: str, step: int) -> dict:
        scores = {"step": step, **self.evaluator.evaluate()}
        if self.evaluator.trainer.accelerator.is_main_process:
            if kind == "steps":
                self.block["steps"].append(scores)
            else:
                self.block[kind] = scores
            self._write(scores)
            if self.on_record is not None:
                self.on_record(self.block)
            self.log(f"held-out ({kind}, step {step}): pass@1 {scores.get('pass@1', 0):.3f} on "
                     f"{scores.get('prompts', 0)} prompts ({scores['seconds']:.1f} s)")
        return scores

    def _write(self, scores: dict) -> None:
        row = {"step": scores["step"], **{f"eval/{k}": v for k, v in scores.items() if k not in ("step",)}}
        with (self.run_dir / METRICS_FILE).open("a") as f:
            f.write(json.dumps(row) + "\n")
        try:
            import wandb

            if wandb.run is not None:
                wandb.log({k: v for k, v in row.items() if k != "step" and v is not None}, commit=False)
        except ImportError:
            pass

    def callback(self):
        from transformers import TrainerCallback

        owner = self

        class HeldOut(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == 0 and owner.want_baseline and "baseline" not in owner.block:
                    owner.run("baseline", 0)

            def on_step_end(self, args, state, control, **kwargs):
                last = state.max_steps and state.global_step >= state.max_steps
                if owner.every and state.global_step % owner.every == 0 and not last:
                    owner.run("steps", state.global_step)

            def on_train_end(self, args, state, control, **kwargs):
                if owner.want_final and state.max_steps and state.global_step >= state.max_steps:
                    owner.run("final", state.global_step)

        return HeldOut()
