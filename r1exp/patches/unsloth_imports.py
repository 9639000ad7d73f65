"""What Unsloth rewrites of TRL when it is imported (loader.trl_trainers).

`import unsloth` runs `PatchFastRL`, which generates an Unsloth version of every trainer TRL has: it reads each
trainer's source, rewrites it, writes it to `unsloth_compiled_cache/` and imports it (14 of `trl.trainer` and 7 of
`trl.experimental` with TRL 1.15). r1exp trains with one of them, GRPOTrainer. `trl_trainers=grpo` (the default)
has Unsloth generate only its GRPOTrainer, with the same call Unsloth makes for each trainer in its walk
(`_patch_trl_rl_trainers("grpo_trainer")`), so the trainer the run builds is the one Unsloth's walk would have made;
`all` leaves Unsloth's import as it is. An Unsloth without those two functions keeps its own walk. On the H200
(docs/benchmarks.md, 0.5B, back to back) Unsloth's share of the imports fell from 6.8 to 3.4 s and from
8.8 to 3.9 s, the run's imports to 0.84x and 0.72x.
"""

from __future__ import annotations

from types import ModuleType

from r1exp.patches.import_hooks import AfterImport

RL_MODULE = "unsloth.models.rl"   # defines patch_trl_rl_trainers; unsloth.models.llama calls it while `unsloth` imports
TRAINER_FILE = "grpo_trainer"     # trl.trainer.grpo_trainer: the trainer r1exp builds


def generate_grpo_trainer_only(rl: ModuleType) -> None:
    """Rebind Unsloth's walk over TRL's trainers to generate the GRPO trainer alone (PatchFastRL looks the walk up
    in its module when it runs)."""
    walk, one = getattr(rl, "patch_trl_rl_trainers", None), getattr(rl, "_patch_trl_rl_trainers", None)
    if not (callable(walk) and callable(one)) or getattr(walk, "_r1exp_grpo_only", False):
        return

    def patch_trl_grpo_trainer():
        one(TRAINER_FILE)

    patch_trl_grpo_trainer._r1exp_grpo_only = True
    patch_trl_grpo_trainer.__wrapped__ = walk
    rl.patch_trl_rl_trainers = patch_trl_grpo_trainer


def import_unsloth(trl_trainers: str) -> None:
    """`import unsloth` (it patches transformers, PEFT and TRL as it is imported), generating the TRL trainers
    `trl_trainers` names: "grpo" or "all"."""
    if trl_trainers == "all":
        import unsloth  # noqa: F401
        return
    with AfterImport({RL_MODULE: [generate_grpo_trainer_only]}):
        import unsloth  # noqa: F401
