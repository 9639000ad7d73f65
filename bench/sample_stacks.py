"""Where a process spends its wall time, from its main thread's Python stack sampled every few tenths of a second.

    python bench/sample_stacks.py --out stacks.jsonl [--every 0.25] -- -m r1exp OVERRIDES...   # run, sampling
    python bench/sample_stacks.py --summarize stacks.jsonl[.gz] [--top 25]                      # the samples, counted

A daemon thread reads the main thread's frames (`sys._current_frames`) every `--every` seconds and writes one JSON
line per sample: the seconds since the start and the frames, innermost first. A main thread inside a long C call
that releases the GIL (a read from disk, a wait on a subprocess or on the GPU) is sampled at the Python line that
made the call; one that holds the GIL is sampled when the call returns (the sample then lands late, never in a
wrong call path). Unlike cProfile, nothing in the process is slowed. (faulthandler's periodic dump, which needs no
GIL, crashed the interpreter here while threads were starting.) The summary counts the innermost frames and the
innermost five frames, most frequent first, and splits the samples by the start-up part running at the time (from
the frames: vLLM's warm-up, graph capture, ...).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path

PARTS = (("capture_model", "graph_capture"), ("compile_or_warm_up_model", "engine_warmup"),
         ("determine_available_memory", "engine_profile"), ("load_model", "engine_weights_load"),
         ("LLM.__init__", "engine_start"), ("from_pretrained", "model_load"),
         ("training_step", "training"), ("_find_and_load", "imports"))


def run(out: Path, every: float, argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: sample_stacks.py --out FILE -- -m MODULE [ARGS]")
    stream, main, stop, t0 = out.open("w"), threading.main_thread().ident, threading.Event(), time.perf_counter()

    def sample() -> None:
        while not stop.wait(every):
            frame = sys._current_frames().get(main)
            frames = []
            while frame is not None:
                frames.append([frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_qualname])
                frame = frame.f_back
            stream.write(json.dumps({"t": round(time.perf_counter() - t0, 3), "frames": frames}) + "\n")

    sampler = threading.Thread(target=sample, name="sample-stacks", daemon=True)
    sampler.start()
    sys.argv = [argv[1], *argv[2:]]
    sys.path[0] = os.getcwd()   # as `python -m` has it (the script's own folder otherwise)
    try:
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        stop.set()
        sampler.join(timeout=2)
        stream.close()
    return 0


def samples(text: str) -> list[tuple[float, list[tuple[str, int, str]]]]:
    """Each sample as (the seconds it stands for: since the sample before it, the main thread's frames, innermost
    first). A sample delayed by a call that held the GIL stands for the whole delay."""
    out, before = [], 0.0
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            out.append((row["t"] - before, [tuple(f) for f in row["frames"]]))
            before = row["t"]
    return out


def short(frame: tuple[str, int, str]) -> str:
    path, line, func = frame
    tail = path.split("site-packages/")[-1].split("/tmp/site/")[-1]
    return f"{tail}:{line} {func}"


def part_of(stack) -> str:
    names = [f for _, _, f in stack]
    for marker, part in PARTS:
        if any(marker in n for n in names):
            return part
    return "other"


def summarize(path: Path, top: int) -> str:
    rows = samples(gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text())

    def table(key, chosen, n) -> list[str]:
        seconds: collections.Counter = collections.Counter()
        for weight, stack in chosen:
            if stack:
                seconds[key(stack)] += weight
        return [f"  {sec:7.2f}  {k}" for k, sec in seconds.most_common(n)]

    def path_of(depth):
        return lambda stack: " <- ".join(short(f) for f in stack[:depth])

    lines = [f"{len(rows)} samples of the main thread over {sum(w for w, _ in rows):.1f} s (seconds each stands "
             "for: since the sample before it)", "", "Seconds by start-up part (from the frames):",
             *table(part_of, rows, 20), "", "Innermost frame:", *table(lambda s: short(s[0]), rows, top), "",
             "Innermost five frames:", *table(path_of(5), rows, top), ""]
    for part in ("engine_warmup", "graph_capture", "engine_profile", "engine_start"):
        chosen = [(w, s) for w, s in rows if part_of(s) == part]
        if chosen:
            lines += [f"{part} ({sum(w for w, _ in chosen):.1f} s), innermost eight frames:",
                      *table(path_of(8), chosen, 12), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--every", type=float, default=0.25)
    parser.add_argument("--summarize", type=Path)
    parser.add_argument("--top", type=int, default=25)
    a = parser.parse_args(argv)
    if a.summarize:
        print(summarize(a.summarize, a.top))
        return 0
    if not a.out:
        parser.error("--out FILE -- -m MODULE ...")
    return run(a.out, a.every, rest)


if __name__ == "__main__":
    raise SystemExit(main())
