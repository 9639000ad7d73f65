"""Trim a GPU result to what its claims read before it is committed under bench/results/gpu/ (bench/results/README.md).

    python bench/gpu/keep.py SRC DEST [--runs LABEL,LABEL] [--folders LABEL,LABEL] [--rename OLD=NEW ...]
                             [--log LABEL[=REGEX] ...] [--stacks LABEL ...] [--no-floor]

SRC is what a device call left: a bench/variants.py folder (variants.json, runs/<label>/...; bench/gpu/side_by_side.sh
packs one per case) or one r1exp run folder (run.json, metrics.jsonl; bench/gpu/jobs.sh). DEST is the claim's folder.

Kept: variants.json with the runs named by --runs (all by default; the others are listed under `left_out`) and the
floor (unless --no-floor), variants.md rendered again from it, and per run named by --folders (every kept run by
default; a run whose claims read only its variants.json entry needs none) a run.json with the fields the tests,
bench/gpu/ratios.py and bench/gpu/plan_vs_measured.py read (RUN_KEYS), its metrics.jsonl as written, the lines of its
log tail that --log names (a REGEX keeps the matching lines, no REGEX the whole tail) and, with --stacks, the summary
of its sampled stacks (stacks.txt). Left out: the machine's paths and process ids, the W&B and Hydra folders, the
page-cache readings, the raw stack samples, the kernel-cache listings. --rename gives a run another label everywhere
(folder, variants.json, the command line, config.name).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

# run.json fields a committed result keeps (r1exp.records.manifest writes the rest: paths, pids, heartbeats, git)
RUN_KEYS = ("status", "exit_code", "error", "seed", "device", "versions", "config", "plan", "startup", "gpu_memory",
            "old_logprobs", "trainer_args", "eval")
# variants.json run fields that name the machine's folders
RUN_PATHS = ("run_dir",)


def _label_re(old: str) -> re.Pattern:
    return re.compile(rf"(?<![\w.]){re.escape(old)}(?![\w])")


def renamed(text: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        text = _label_re(old).sub(new, text)
    return text


def trim_manifest(run: dict, renames: dict[str, str] | None = None) -> dict:
    kept = {key: run[key] for key in RUN_KEYS if key in run}
    name = (kept.get("config") or {}).get("name")
    if renames and name in renames:
        kept["config"] = {**kept["config"], "name": renames[name]}
    return kept


def trim_run(src: Path, dest: Path, log: str | None | bool = False, stacks: bool = False,
             renames: dict[str, str] | None = None) -> None:
    """One run folder: run.json (RUN_KEYS), metrics.jsonl, the log lines asked for, the stacks' summary."""
    dest.mkdir(parents=True, exist_ok=True)
    if (src / "run.json").exists():
        run = json.loads((src / "run.json").read_text())
        (dest / "run.json").write_text(json.dumps(trim_manifest(run, renames), indent=1) + "\n")
    if (src / "metrics.jsonl").exists():
        shutil.copy(src / "metrics.jsonl", dest / "metrics.jsonl")
    if log is not False and (src / "log_tail.txt").exists():
        text = (src / "log_tail.txt").read_text(errors="replace")
        if isinstance(log, str):
            text = "".join(line for line in text.splitlines(keepends=True) if re.search(log, line))
        (dest / "log_tail.txt").write_text(text)
    if stacks and (src / "stacks.txt").exists():
        shutil.copy(src / "stacks.txt", dest / "stacks.txt")


def trim_call(src: Path, dest: Path, runs: list[str] | None = None, renames: dict[str, str] | None = None,
              logs: dict[str, str | None] | None = None, stacks: tuple[str, ...] = (), floor: bool = True,
              folders: list[str] | None = None) -> dict:
    """A bench/variants.py folder: variants.json/.md with the runs kept, and each kept run's files."""
    renames, logs = renames or {}, logs or {}
    result = json.loads((src / "variants.json").read_text())
    labels = list(result["runs"]) if runs is None else runs
    missing = [label for label in labels if label not in result["runs"]]
    if missing:
        raise SystemExit(f"{src}: no run {', '.join(missing)} in variants.json")
    left_out = [label for label in result["runs"] if label not in labels]
    kept = {}
    for label in labels:
        entry = {k: v for k, v in result["runs"][label].items() if k not in RUN_PATHS}
        if "overrides" in entry and isinstance(entry["overrides"], list):
            entry["overrides"] = [renamed(o, renames) if o.startswith("name=") else o for o in entry["overrides"]]
        kept[renames.get(label, label)] = entry
    result["runs"] = kept
    result["command"] = renamed(result.get("command", ""), renames)
    if result.get("floor_after") in renames:
        result["floor_after"] = renames[result["floor_after"]]
    if not floor:
        result.pop("floor", None)
        result["floor_after"] = None
    if left_out:
        result["left_out"] = [renames.get(label, label) for label in left_out]
    if folders is not None and set(labels) - set(folders):
        result["runs_without_files"] = [renames.get(label, label) for label in labels if label not in folders]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "variants.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (dest / "variants.md").write_text(render(result))
    for label in labels if folders is None else folders:
        new = renames.get(label, label)
        trim_run(src / "runs" / label, dest / "runs" / new,
                 log=logs.get(label, False) if label in logs else False, stacks=label in stacks, renames=renames)
    for name in ("machine.txt",):
        if (src / name).exists():
            shutil.copy(src / name, dest / name)
    return result


def render(result: dict) -> str:
    """variants.md as bench/variants.py writes it, from the trimmed variants.json."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import variants

    text = variants.markdown(result)
    if result.get("left_out"):
        text += (f"\nLeft out of the committed result (no claim reads them): {', '.join(result['left_out'])}; the "
                 "command above ran them in this order.\n")
    return text


def _pairs(items: list[str]) -> dict[str, str | None]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        out[key] = value if sep else None
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--runs", default=None, help="LABEL,LABEL: the runs to keep (default: every run)")
    parser.add_argument("--folders", default=None, help="LABEL,LABEL: the kept runs that keep their files "
                        "(default: every kept run)")
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW: a run's label")
    parser.add_argument("--log", action="append", default=[], help="LABEL[=REGEX]: keep that run's log lines")
    parser.add_argument("--stacks", action="append", default=[], help="LABEL: keep that run's stacks.txt")
    parser.add_argument("--no-floor", action="store_true", help="leave the floor out")
    a = parser.parse_args(argv)
    renames = {k: v for k, v in _pairs(a.rename).items() if v}
    if (a.src / "variants.json").exists():
        trim_call(a.src, a.dest, a.runs.split(",") if a.runs else None, renames, _pairs(a.log), tuple(a.stacks),
                  not a.no_floor, [f for f in a.folders.split(",") if f] if a.folders is not None else None)
    else:
        logs = _pairs(a.log)
        trim_run(a.src, a.dest, log=next(iter(logs.values())) if logs else False, stacks=bool(a.stacks))
    print(f"kept {a.src} in {a.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
