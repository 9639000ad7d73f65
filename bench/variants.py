"""r1exp runs of one shape with different settings, back to back on one machine, side by side.

    python bench/variants.py --base "OVERRIDES" --variant LABEL=OVERRIDES [--variant ...] [--steps 6]
                             [--floor-after LABEL] [--engine-arg K=V[,K=V]] [--batch-scales 1,2,4,8]
                             [--budget 540] --out DIR

Each variant is `python -m r1exp <base> <variant overrides> logger=none trainer.max_steps=<steps>`, in the order
given (a variant's own value wins over the base's). Per run: the mean and median step after the first, the phase
means (r1exp.observe.timing), the device's peak memory and the plan, start to first step, wall time. `--floor-after
LABEL` measures bench/gpu_floor.py's floor from that run's config right after it, with the `--engine-arg` variants
of vLLM alone (and `--batch-scales` sequences at once where max_num_seqs allows). Results go to
`<out>/variants.json` and `<out>/variants.md` after every run (a call cut short keeps what it measured), each run's
run.json, metrics.jsonl and log tail to `<out>/runs/<label>/`. `--floor-last`: the floor after all the runs.
`--cold-kernels LABEL`: that variant runs with an empty `hardware.kernel_cache` (every on-disk kernel cache empty,
bench/kernel_caches.py), as on a machine that never compiled its kernels; what it compiled is summarized in
`runs/<label>/kernel_caches.json`. Every run: how much of the packages' native libraries was in the page cache
before and after it (bench/page_cache.py), in `runs/<label>/page_cache.json`. `--evict-libraries LABEL`: those
libraries are dropped from the page cache before that variant runs, as on a machine that has not read them.
`--sample-stacks LABEL`: that variant runs under bench/sample_stacks.py (`runs/<label>/stacks.jsonl.gz` and its
summary `stacks.txt`).

Used on the H200 by bench/gpu/side_by_side.sh (one case per committed result under bench/results/gpu/, trimmed by
bench/gpu/keep.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from r1exp.observe.timing import STARTUP_PARTS  # noqa: E402
from gpu_floor import (_f, _kv, _machine, _tail, keep_run_files, measure_floor_process,  # noqa: E402
                       merge_overrides, run_r1exp)
from kernel_caches import summary as kernel_cache_summary  # noqa: E402
import page_cache  # noqa: E402
import sample_stacks  # noqa: E402

HERE = Path(__file__).resolve().parent


def library_residency(libraries: list[Path]) -> dict:
    """The page-cache residency of the libraries: totals and the 60 largest."""
    r = page_cache.residency(libraries)
    return {**{k: v for k, v in r.items() if k != "libraries"}, "largest": r["libraries"][:60]}


def memory(run: dict) -> tuple[float | None, float | None]:
    """(measured device peak, planned total) in GiB, from run.json."""
    return (run.get("gpu_memory") or {}).get("gpu/peak_used_gb"), run.get("plan_total_gb")


def phase_peaks(run: dict) -> str:
    """`generation 9.1, logprobs 17.4, ...`: torch's peak allocation (GiB) by step phase (r1exp.observe.timing)."""
    return ", ".join(f"{phase} {gb:.1f}" for phase, gb in (run.get("phase_peak_gb") or {}).items())


def startup_lines(result: dict) -> list[str]:
    """Start to first step, part by part (run.json `startup`), the five packages whose imports took longest, and
    how much of the native libraries was in the page cache when the run started."""
    rows = [(label, run) for label, run in result["runs"].items() if run.get("startup")]
    if not rows:
        return []
    lines = ["", "Start-up (s, run.json `startup`; imports: each package's own share; libraries: GiB of the packages' "
             "native libraries in the page cache before the run, evicted or not):", "",
             "| variant | " + " | ".join(p.replace("_", " ") for p in STARTUP_PARTS) + " | to first step | "
             "largest imports | libraries |", "|---|" + "---|" * (len(STARTUP_PARTS) + 3)]
    for label, run in rows:
        s = run["startup"]
        imports = ", ".join(f"{pkg} {sec:.1f}" for pkg, sec in list((s.get("imports_by_package_s") or {}).items())[:5])
        resident = (run.get("libraries_resident_gib") or {}).get("before")
        libraries = "" if resident is None else f"{resident}{' (evicted)' if run.get('libraries_evicted') else ''}"
        lines.append(f"| {label} | " + " | ".join(_f(s.get(f"{p}_s"), 1) for p in STARTUP_PARTS)
                     + f" | {_f(s.get('process_to_first_step_s'), 1)} | {imports} | {libraries} |")
    return lines


def markdown(result: dict) -> str:
    lines = [f"# r1exp variants side by side ({result['machine']}, {result['date']})", "",
             f"Command: `{result['command']}`", "",
             f"Base: `{result['base']}`; {result['steps']} steps each, mean and median over the steps after the "
             "first.", "",
             "| variant | overrides | exit | mean step s | median step s | generation s | weight sync s | logprobs s | "
             "fwd+bwd+optim s | peak GiB | plan GiB | torch peak GiB by phase | start to first step s | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, run in result["runs"].items():
        if "skipped" in run:
            lines.append(f"| {label} | `{run['overrides']}` | skipped: {run['skipped']} |" + " |" * 11)
            continue
        p = run.get("phases_s") or {}
        peak, planned = memory(run)
        error = "" if run["exit_code"] == 0 else f" ({(run.get('error') or '').splitlines()[:1]})"
        lines.append(f"| {label} | `{run['variant_overrides']}` | {run['exit_code']}{error} | {_f(run.get('step_s'))} | "
                     f"{_f(run.get('median_step_s'))} | {_f(p.get('generation'))} | {_f(p.get('weight_sync'))} | "
                     f"{_f(p.get('logprobs'))} | {_f(p.get('backward_optimizer'))} | {_f(peak, 1)} | "
                     f"{_f(planned, 1)} | {phase_peaks(run)} | "
                     f"{_f((run.get('startup') or {}).get('process_to_first_step_s'), 1)} | "
                     f"{_f(run.get('wall_s'), 1)} |")
    lines += startup_lines(result)
    cold = [(label, run) for label, run in result["runs"].items() if run.get("cold_kernels")]
    if cold:
        lines += ["", "Runs with every kernel cache empty (`--cold-kernels`; what they compiled, files / MiB):", ""]
        lines += [f"- {label}: " + ", ".join(f"{name} {c.get('files')} / {c.get('mib')}" for name, c in
                                             (run.get("kernel_caches") or {}).items() if isinstance(c, dict))
                  for label, run in cold]
    floor = result.get("floor")
    if floor:
        lines += ["", f"vLLM alone (bench/gpu_floor.py, from the config of `{result['floor_after']}`):", ""]
        for g in [floor.get("generation"), *floor.get("generation_variants", [])]:
            if not g:
                continue
            lines.append(f"- {g.get('variant') or 'as TRL builds it'}: {g['seconds']:.3f} s for {g['tokens']} tokens "
                         f"({g['tokens_per_s']:.0f} tok/s, {g['sequences']} sequences, engine start "
                         f"{g['engine_start_s']} s)")
            for flag, t in (g.get("detokenize") or {}).items():
                lines.append(f"  - detokenize={flag} (interleaved, same engine): {t['seconds']:.3f} s (runs {t['all_s']})")
            for b in g.get("by_batch", []):
                lines.append(f"  - {b['sequences']} sequences at once: {b['seconds']:.3f} s ({b['tokens_per_s']:.0f} "
                             "tok/s)")
        if "train" in floor:
            lines.append(f"- training step alone: {floor['train']['seconds']:.3f} s")
        if "error" in floor:
            lines.append(f"- floor failed: {floor['error'][-400:]}")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "variants.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "variants.md").write_text(markdown(result))


def measure(result: dict, run_dir: Path, a, left: float, out: Path) -> None:
    """The floor (bench/gpu_floor.py) from the config of the run in run_dir."""
    if not (run_dir / "run.json").exists() or left <= 45:
        result["floor"] = {"error": "budget spent" if left <= 45 else "the run left no run.json"}
        write(result, out)
        return
    variants = [dict(_kv(item) for item in spec.split(",")) for spec in a.engine_arg]
    work = run_dir.parent
    result["floor"] = measure_floor_process(run_dir, work / "floor.json", a.repeats, variants, work / "floor.log",
                                            min(left, 3600), a.batch_scales)
    (out / "runs" / "floor_log_tail.txt").write_text(_tail(work / "floor.log", 20000))
    print(f"floor: {_f(result['floor'].get('step_floor_s'))} s", flush=True)
    write(result, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="Hydra overrides of every run")
    parser.add_argument("--variant", action="append", required=True, help="LABEL=OVERRIDES (may be empty)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--floor-after", default=None, help="measure the floor from this variant's run")
    parser.add_argument("--floor-last", action="store_true", help="... after all variants instead of right after it")
    parser.add_argument("--engine-arg", action="append", default=[])
    parser.add_argument("--batch-scales", default="1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--cold-kernels", action="append", default=[], help="run this variant with empty kernel caches")
    parser.add_argument("--evict-libraries", action="append", default=[],
                        help="drop the native libraries from the page cache before this variant")
    parser.add_argument("--sample-stacks", action="append", default=[], help="sample this variant's stacks")
    parser.add_argument("--out", required=True)
    a = parser.parse_args(argv)
    start, out = time.perf_counter(), Path(a.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    result = {"command": "python " + " ".join(shlex.quote(x) for x in ["bench/variants.py", *(argv or sys.argv[1:])]),
              "machine": _machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "base": a.base, "steps": a.steps,
              "floor_after": a.floor_after, "runs": {}}

    def left() -> float:
        return float("inf") if a.budget is None else a.budget - (time.perf_counter() - start)

    libraries = page_cache.libraries()
    for spec in a.variant:
        label, _, extra = spec.partition("=")
        if left() <= 45:
            result["runs"][label] = {"skipped": "budget spent", "overrides": extra}
            write(result, out)
            continue
        cold = work / f"{label}_kernel_caches" if label in a.cold_kernels else None
        overrides = merge_overrides(shlex.split(a.base),
                                    ["logger=none", f"trainer.max_steps={a.steps}", "trainer.logging_steps=1",
                                     f"name={label}"], shlex.split(extra)
                                    + ([f"hardware.kernel_cache={cold}"] if cold else []))
        run_dir = work / label
        if cold:
            shutil.rmtree(cold, ignore_errors=True)
        files = out / "runs" / label
        files.mkdir(parents=True, exist_ok=True)
        pages = {}
        if label in a.evict_libraries:
            for path in libraries:
                page_cache.evict(path)
            pages["evicted"] = True
        pages["before"] = library_residency(libraries)
        stacks = files / "stacks.jsonl"
        launcher = ([str(HERE / "sample_stacks.py"), "--out", str(stacks), "--"] if label in a.sample_stacks else [])
        run = run_r1exp(overrides, run_dir, min(left(), 3600), launcher)
        pages["after"] = library_residency(libraries)
        (files / "page_cache.json").write_text(json.dumps(pages, indent=1))
        if stacks.exists():   # the summary, and the samples compressed (1-2 MB a run as text)
            (files / "stacks.txt").write_text(sample_stacks.summarize(stacks, 30))
            with stacks.open("rb") as raw, gzip.open(stacks.with_suffix(".jsonl.gz"), "wb") as packed:
                shutil.copyfileobj(raw, packed)
            stacks.unlink()
        run.update(variant_overrides=extra, cold_kernels=cold is not None, libraries_evicted=label in a.evict_libraries,
                   libraries_resident_gib={k: pages[k]["resident_gib"] for k in ("before", "after")})
        if cold:
            caches = kernel_cache_summary(str(cold))
            (files / "kernel_caches.json").write_text(json.dumps(caches, indent=1))
            run["kernel_caches"] = {name: {k: v for k, v in c.items() if k != "kernels"} for name, c in caches.items()}
        if run["exit_code"] != 0:
            run.setdefault("error", _tail(run_dir.with_suffix(".log"), 600))
        result["runs"][label] = run
        keep_run_files(run_dir, files)
        print(f"{label}: exit {run['exit_code']}, step {_f(run.get('step_s'))} s, wall {run['wall_s']} s", flush=True)
        write(result, out)
        if label == a.floor_after and not a.floor_last:
            measure(result, run_dir, a, left(), out)
    if a.floor_last and a.floor_after in result["runs"]:
        measure(result, work / a.floor_after, a, left(), out)
    print(f"wrote {out / 'variants.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
