"""`python -m r1exp.eval`: score a saved run's adapter, its base model, or any model, on held-out prompts.

    python -m r1exp.eval RUN_DIR                         # the run's trained adapter on the run's held-out prompts
    python -m r1exp.eval RUN_DIR --base                  # the same model without the adapter (the starting point)
    python -m r1exp.eval RUN_DIR eval.k=8 eval.temperature=1.0     # other settings (pass@8, maj@8)
    python -m r1exp.eval model=qwen0_5b data=gsm8k       # any model, no training (a config as `python -m r1exp`)

The prompts and settings are the `eval` group's (conf/eval/heldout.yaml unless the run had its own). The model is
built with the run's own loader and engine (the pre-flight checks it first: a bad override, a missing adapter or
model exits 2 before anything loads). The record goes into a NEW folder, outputs/evals/<date>/<time>_<name>/eval.json
(`--out DIR` for another), never into the run's. A folder is data: code its config names that is not r1exp's own is
refused unless `--allow=module.name` or `--trust` (as for reproduce). The scores: pass@1 (and with k > 1 pass@k, maj@k), each reward's mean and the
completion length. Exit 0 with the scores printed; 2 for bad input.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from r1exp.errors import EXIT_OK, EXIT_USAGE, errors_of, render_problems
from r1exp.reproduce import UsageError, saved_config, trust_flags

PRIMARY = "eval"
ADAPTER = "adapter"


def parse_args(argv: list[str]) -> tuple[Path | None, list[str], bool, Path | None]:
    run_dir, overrides, base, out = None, [], False, None
    args = iter(argv)
    for arg in args:
        if arg == "--base":
            base = True
        elif arg.startswith("--out"):
            out = Path(arg.split("=", 1)[1] if "=" in arg else next(args, ""))
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}\n  fix: python -m r1exp.eval [RUN_DIR] [--base] [--out DIR] "
                             "[overrides]")
        elif "=" not in arg and run_dir is None and not overrides:
            run_dir = Path(arg)
        else:
            overrides.append(arg)
    if run_dir is not None and not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder\n  fix: give a folder `python -m r1exp` made (python -m "
                         "r1exp.runs lists them), or overrides only to score a model without training")
    if base and run_dir is None:
        raise UsageError("--base scores a run's base model: give the run folder")
    return run_dir, overrides, base, out


def compose_config(run_dir: Path | None, overrides: list[str], allowed: tuple = (), trust_all: bool = False):
    """The config to evaluate: the run's saved one (its keys changed by the overrides) or conf/ composed; with the
    heldout eval settings when it has none."""
    from omegaconf import OmegaConf, open_dict

    from r1exp.config.compose import CONF_DIR, compose
    from r1exp.records import trust

    if run_dir is None:
        cfg = compose(overrides)
    else:
        config = trust.config_of_folder(saved_config(run_dir))   # Hydra's settings are this installation's
        foreign = trust.untrusted_targets(config, allowed, trust_all)
        if foreign:
            raise UsageError(trust.refusal(run_dir, foreign, "python -m r1exp.eval"))
        with tempfile.TemporaryDirectory(prefix="r1exp-eval-") as folder:
            OmegaConf.save(OmegaConf.create(config), Path(folder) / f"{PRIMARY}.yaml")
            cfg = compose(overrides, PRIMARY, folder)
    if str((cfg.get("eval") or {}).get("name", "none")) == "none":
        given = OmegaConf.from_dotlist([o for o in overrides if o.startswith("eval.")]).get("eval") or {}
        with open_dict(cfg):
            cfg.eval = OmegaConf.merge(OmegaConf.load(CONF_DIR / "eval" / "heldout.yaml"), given)
    return cfg


def evaluate(run_dir: Path | None, overrides: list[str], base: bool, out_dir: Path | None, out=print,
             allowed: tuple = (), trust_all: bool = False) -> int:
    from r1exp.checks.validate import preflight
    from r1exp.machine.facts import detect

    cfg = compose_config(run_dir, overrides, allowed, trust_all)
    adapter = run_dir / ADAPTER if run_dir is not None and not base else None
    if adapter is not None and not (adapter / "adapter_config.json").exists():
        raise UsageError(f"{adapter} holds no trained adapter (the run did not finish, or trained every weight)\n"
                         f"  fix: python -m r1exp.eval {run_dir} --base scores its base model; for loader=full give "
                         f"model.name_or_path={adapter}")
    checked = preflight(cfg, detect(), dry_run=False)
    from r1exp.evaluation import heldout

    if heldout.source_of(cfg) is None:
        raise UsageError(f"data={cfg.data.name} has no held-out prompts\n  fix: data.eval_split=<split> or "
                         "data.num_samples=N (the records after the first N), or another data=...")
    if heldout.correctness_reward(cfg) is None:
        raise UsageError("no reward of the run says whether an answer is right\n  fix: eval.correct=<reward label> "
                         "(a reward whose score >= 1 means correct)")
    if errors_of(checked.problems):
        out(render_problems(errors_of(checked.problems)))
        return EXIT_USAGE
    folder = out_dir or Path("outputs/evals") / f"{datetime.now():%Y-%m-%d}" / f"{datetime.now():%H-%M-%S}_{cfg.name}"
    folder.mkdir(parents=True, exist_ok=False)
    from r1exp.observe import console

    console.route(folder)   # the libraries' output to <folder>/train.log, as a run's (R1EXP_LIVE=verbose shows it)
    scores, heldout_set = score(checked.run, folder, adapter)
    record = {"run": str(run_dir) if run_dir else None, "model": str(cfg.model.name_or_path),
              "adapter": str(adapter) if adapter else None, "eval": {"set": heldout_set, "scores": scores}}
    (folder / "eval.json").write_text(json.dumps(record, indent=1) + "\n")
    out(f"pass@1 {scores.get('pass@1', 0):.3f} on {scores.get('prompts', 0)} held-out prompts"
        + "".join(f", {k} {v:.3f}" for k, v in scores.items() if k.startswith(("pass@", "maj@")) and k != "pass@1")
        + f" ({heldout_set['source']}); record: {folder / 'eval.json'}")
    return EXIT_OK


def score(run, folder: Path, adapter: Path | None) -> tuple[dict, dict]:
    """Build the run's trainer (its loader, engine and rewards) without training, load the adapter, evaluate once."""
    from r1exp.build import build, prepare_imports
    from r1exp.evaluation.schedule import Evaluations

    prepare_imports(run)
    with run.engine.lifecycle(run.cfg, folder):
        built = build(run, folder, "none", callbacks=[])
        if adapter is not None:
            load_adapter(built.trainer.model, adapter)
        evaluations = Evaluations(run.cfg, built.trainer, built.reward_funcs, folder, log=lambda *_: None)
        scores = evaluations.evaluator.evaluate()
    return scores, evaluations.block["set"]


def load_adapter(model, adapter: Path) -> None:
    """The saved LoRA weights into the trainer's freshly wrapped model (PEFT's own loader)."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    set_peft_model_state_dict(model, load_peft_weights(str(adapter)))


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return EXIT_OK
    try:
        argv, allowed, trust_all = trust_flags(argv)
        run_dir, overrides, base, out_dir = parse_args(argv)
        return evaluate(run_dir, overrides, base, out_dir, allowed=allowed, trust_all=trust_all)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - composition errors (Hydra, OmegaConf) are the user's input
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(e, (HydraException, OmegaConfBaseException)):
            print(f"error: the overrides do not compose: {str(e).splitlines()[0]}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(cli())
