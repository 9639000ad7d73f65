"""The hooks behind r1exp.observe.timing: TRL and transformers trainer methods, TRL's engine methods, vLLM's
workers and `builtins.__import__` are wrapped so their time is counted per phase (time/* in metrics.jsonl, run.json
`startup`).

Why: neither TRL nor vLLM reports where a step's or a start's time goes. Each wrapper only measures and calls the
original; a method, class or worker a version does not have is left alone and its phase is not timed (so an upgrade
loses a timing, never a run). The import timer and the start-up wrappers are undone after the build; the method
wrappers live as long as the trainer. Verified on the versions in r1exp.patches.PATCHES["timing_hooks"].
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import threading
import time
from collections import defaultdict
from typing import Callable

from r1exp.machine import bytecode
from r1exp.patches.import_hooks import AfterImport


def wrap_method(obj, name: str, phase: str, clock, skip_inside: str | None = None) -> bool:
    """Time `obj.name` as `phase` (an instance attribute shadows the class's method). False when it is missing.
    With `skip_inside`, a call made while that phase is the innermost one is not timed separately."""
    original = getattr(obj, name, None)
    if original is None or not callable(original) or getattr(original, "_r1exp_phase", None):
        return False

    @functools.wraps(original)
    def timed(*args, **kwargs):
        if skip_inside is not None and clock.top() == skip_inside:
            return original(*args, **kwargs)
        with clock.phase(phase):
            return original(*args, **kwargs)

    timed._r1exp_phase = phase
    try:
        setattr(obj, name, timed)
    except (AttributeError, TypeError):   # a slotted or read-only object
        return False
    return True


# (module, attribute path, part): functions timed during the build, patched as soon as their module is imported
# (and undone after the build). The engine's parts are nested in engine_start and taken out of it.
STARTUP_TARGETS = (
    ("r1exp.models.tiny", "ensure_local_model", "model_build"),
    ("transformers.modeling_utils", "PreTrainedModel.from_pretrained", "model_load"),
    ("vllm.entrypoints.llm", "LLM.__init__", "engine_start"),
    ("vllm.v1.worker.gpu_worker", "Worker.load_model", "engine_weights_load"),
    ("vllm.v1.worker.gpu_worker", "Worker.determine_available_memory", "engine_profile"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker.determine_available_memory", "engine_profile"),
    ("vllm.v1.worker.gpu_worker", "Worker.compile_or_warm_up_model", "engine_warmup"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker.compile_or_warm_up_model", "engine_warmup"),
    ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.capture_model", "graph_capture"),
    ("vllm.v1.worker.gpu.model_runner", "GPUModelRunner.capture_model", "graph_capture"),
)


class ImportTimer:
    """During the build: the first imports of heavy packages (an `import` of torch, transformers, TRL, vLLM, ...
    by anyone) count as `imports`. Only the installing thread is watched; imports made with importlib directly
    (lazy submodules) count in the part that made them.

    `by_package` splits that time by package, each package's own share: an import of TRL that imports
    transformers counts transformers' time to transformers, the rest to TRL (a lazy submodule a package loads
    through importlib counts to the package whose import statement ran it)."""

    def __init__(self, clock):
        self.clock = clock
        self.thread = threading.get_ident()
        self.stack: list[list] = []   # [package, start, seconds spent in other heavy packages it imported]
        self.by_package: dict[str, float] = defaultdict(float)
        self.original = builtins.__import__
        self.hook = self._import   # one bound method, so that uninstall can tell it is still the one installed

    def install(self) -> None:
        builtins.__import__ = self.hook

    def uninstall(self) -> None:
        if builtins.__import__ is self.hook:
            builtins.__import__ = self.original

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        package = name.partition(".")[0]
        if (level or threading.get_ident() != self.thread or package not in bytecode.HEAVY_PACKAGES
                or (self.stack and self.stack[-1][0] == package)):
            return self.original(name, globals, locals, fromlist, level)
        outermost = not self.stack
        if outermost:
            self.clock.enter("imports")
        frame = [package, time.perf_counter(), 0.0]
        self.stack.append(frame)
        try:
            return self.original(name, globals, locals, fromlist, level)
        finally:
            self.stack.pop()
            took = time.perf_counter() - frame[1]
            self.by_package[package] += took - frame[2]
            if self.stack:
                self.stack[-1][2] += took
            if outermost:
                self.clock.exit()

    def shares(self, min_s: float = 0.05) -> dict[str, float]:
        """Seconds per package, largest first; packages under `min_s` left out."""
        return {p: round(s, 2) for p, s in sorted(self.by_package.items(), key=lambda kv: -kv[1]) if s >= min_s}


class PostImportPatcher:
    """Times the functions of `targets` as their part: patched at once when their module is already imported,
    else right after the module is executed (r1exp/patches/import_hooks.py). Undone by uninstall."""

    def __init__(self, clock, targets):
        self.clock = clock
        self.targets: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for module, path, part in targets:
            self.targets[module].append((path, part))
        self.hook = AfterImport({module: [self._patch_module] for module in self.targets})
        self.restore: list[Callable[[], None]] = []

    def install(self) -> None:
        self.hook.install()

    def uninstall(self) -> None:
        self.hook.uninstall()
        for undo in reversed(self.restore):
            undo()
        self.restore.clear()

    def _patch_module(self, module) -> None:
        for path, part in self.targets.get(module.__name__, []):
            with contextlib.suppress(Exception):   # renamed in this version: that part is simply not split out
                self._patch(module, path, part)

    def _patch(self, module, path: str, part: str) -> None:
        *owners, attr = path.split(".")
        owner = module
        for name in owners:
            owner = getattr(owner, name)
        static = vars(owner).get(attr)
        if static is None or getattr(static, "_r1exp_phase", None):
            return
        is_classmethod = isinstance(static, classmethod)
        func = static.__func__ if is_classmethod else static
        clock = self.clock

        @functools.wraps(func)
        def timed(*args, **kwargs):
            with clock.phase(part):
                return func(*args, **kwargs)

        timed._r1exp_phase = part
        setattr(owner, attr, classmethod(timed) if is_classmethod else timed)
        self.restore.append(lambda: setattr(owner, attr, static))
