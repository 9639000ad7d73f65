"""A loader that writes down what was imported before the run asked it to prepare its imports, then stops the run.

`loader._target_=components.import_order_probe.ImportOrderProbe` (tests/ on the path): its `prepare_imports` writes
to the file named by R1EXP_IMPORT_PROBE which of torch, transformers, PEFT and TRL were already imported and the
OpenMP setting the engine leaves for torch, then stops the run with a configuration problem (exit status 2)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from r1exp.errors import ConfigError, Problem
from r1exp.loaders.peft_loader import PeftLoader

WATCHED = ("torch", "transformers", "peft", "trl")


class ImportOrderProbe(PeftLoader):
    def prepare_imports(self, cfg) -> None:
        Path(os.environ["R1EXP_IMPORT_PROBE"]).write_text(json.dumps({
            "imported": [m for m in WATCHED if m in sys.modules], "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}))
        raise ConfigError([Problem("loader._target_", "ImportOrderProbe", "the import-order probe stops here",
                                   "nothing to fix: the test reads what it wrote")])
