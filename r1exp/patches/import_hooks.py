"""Run code on a module right after it is executed, before whoever imported it gets it back.

    hook = AfterImport({"vllm.v1.worker.gpu_worker": [patch_worker]})
    hook.install()      # a module already imported gets its callbacks at once
    ...                 # the first import of a named module runs the module, then its callbacks
    hook.uninstall()    # later imports are left alone (what the callbacks changed stays changed)

A finder at the front of `sys.meta_path` that finds the module as Python would and wraps its loader's
`exec_module`: the loader stays the file's own, so source lines, `inspect` and tracebacks work as before. Used to time
vLLM's and transformers' functions during a run's start (r1exp/observe/timing.py) and to choose what Unsloth patches at its
import (r1exp/patches/unsloth_imports.py), where the code to change runs while its own package is being imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType

Callback = Callable[[ModuleType], None]


class AfterImport(importlib.abc.MetaPathFinder):
    def __init__(self, callbacks: Mapping[str, Sequence[Callback]]):
        self.callbacks = {name: list(funcs) for name, funcs in callbacks.items()}
        self.active = False

    def install(self) -> None:
        self.active = True
        for name in list(self.callbacks):
            if name in sys.modules:
                self._run(sys.modules[name])
        sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        self.active = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def __enter__(self) -> AfterImport:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def find_spec(self, fullname, path=None, target=None):
        if not self.active or fullname not in self.callbacks:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, hook = spec.loader.exec_module, self

        def exec_then_call(module):
            exec_module(module)
            if hook.active:
                hook._run(module)

        spec.loader.exec_module = exec_then_call
        return spec

    def _run(self, module: ModuleType) -> None:
        for callback in self.callbacks.get(module.__name__, []):
            callback(module)
