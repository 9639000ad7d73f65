"""Library noise off the console: what vLLM, transformers, torch, accelerate and friends print goes to the run
folder's `train.log`, next to the full log dictionaries (r1exp.observe.live); the console keeps r1exp's own lines.

    console.route(run_dir)    # first thing in a run (r1exp.run.run), before torch, transformers or vLLM is imported

`R1EXP_LIVE=verbose` turns it off: every library prints on the console as it would without r1exp (the variable
also forces the live view's mode: `R1EXP_LIVE=plain,verbose` does both). Without it, each run (each job of a sweep)
sends to its own train.log:

- log records of library code (a record whose logger belongs to a library, or whose call site is a file of
  site-packages or the standard library): Triton's and vLLM's INFO lines, the tokenizer's PAD/BOS/EOS note, torch's
  `W1206 ... triton.py:53] Triton not available`. The console still shows a library's ERROR and above (train.log
  has them too). Libraries that print through a handler of their own (transformers' `[transformers] ...`, torch's
  and vLLM's) lose that handler right after they install it, so that their records reach the root logger where the
  rule above applies (`_HOOKS`, through r1exp.patches.import_hooks). Hydra's own lines ([HYDRA] Launching ...) and
  r1exp's stay on the console.
- Python warnings whose call site is library code (`FutureWarning: torch.distributed.reduce_op is deprecated` with
  its source line, accelerate's `OMP_NUM_THREADS/MKL_NUM_THREADS unset`); warnings of r1exp and of your own code (a
  reward module) stay on the console (`warnings.showwarning`).
- progress bars of transformers ("Loading weights", "Writing model shards", through transformers' tqdm hook) and
  vLLM ("Loading safetensors checkpoint shards"): their final state, one line per bar. Hugging Face Hub downloads
  keep their bar on the console: a download can take minutes, and the bar is the only sign of progress.
- what C/C++ code writes to the process's stderr while vLLM's engine starts (`EngineCore.__init__`), such as the
  CPU worker's `[W... utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy ...`: for that call, file
  descriptor 2 is train.log (and so is anything else written to stderr meanwhile, such as the CUDA-graph capture
  bars of vLLM on a GPU).

No environment variable is set for the libraries (VLLM_LOGGING_LEVEL, VLLM_CONFIGURE_LOGGING, TRANSFORMERS_VERBOSITY,
TORCH_CPP_LOG_LEVEL): they would reach a vLLM server r1exp launches (engine=vllm_server), whose own log should stay
complete, and they would drop messages rather than keep them in train.log. Triton prints nothing unless asked
(TRITON_PRINT_AUTOTUNING=1). A rank > 0 of a multi-process run is left alone: all its output already goes to
rank<N>.log (r1exp.scale.distributed.route_rank_output).

What it wraps upstream lives in r1exp.patches.library_output (the targets, the versions they were read against, and
why); tests/test_console.py checks each one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import sysconfig
import threading
import warnings
from pathlib import Path

from r1exp.machine.processes import is_main_process
from r1exp.patches import library_output

SWITCH = "R1EXP_LIVE"           # R1EXP_LIVE=verbose: library output on the console
VERBOSE = "verbose"
LOG_FILE = "train.log"
# loggers that are r1exp's or Hydra's (the sweep's "[HYDRA] Launching 2 jobs locally"): always on the console
OWN_LOGGERS = ("r1exp", "__main__", "HYDRA", "hydra")
# loggers of libraries whose records go to train.log wherever the call is (a compiled cache, generated code)
LIBRARY_LOGGERS = ("vllm", "transformers", "torch", "accelerate", "trl", "peft", "datasets", "huggingface_hub",
                   "unsloth", "unsloth_zoo", "deepspeed", "triton", "bitsandbytes", "tokenizers", "safetensors",
                   "wandb", "urllib3", "httpx", "httpcore", "filelock", "fsspec", "matplotlib", "PIL", "numexpr",
                   "asyncio", "xformers", "flashinfer", "ray", "torchao", "numba")
RECORD_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
_OWN_DIR = str(Path(__file__).resolve().parents[1])      # r1exp/


def settings() -> set[str]:
    """The words of R1EXP_LIVE ("plain,verbose" -> {"plain", "verbose"})."""
    return {w for w in re.split(r"[\s,+]+", os.environ.get(SWITCH, "").strip().lower()) if w}


def verbose() -> bool:
    return VERBOSE in settings()


def routed() -> bool:
    """Whether library output of the current run goes to its train.log (route() ran without the switch)."""
    return _sink.path is not None


def route(run_dir) -> None:
    """Send library output of the run in `run_dir` to its train.log (the module doc says what); with
    R1EXP_LIVE=verbose, or on a rank > 0, do nothing. Safe to call once per job of a sweep in one process."""
    if verbose() or not is_main_process():
        return
    _sink.point(Path(run_dir) / LOG_FILE)
    _install_root_handlers()
    if warnings.showwarning is not _showwarning:
        _original["showwarning"] = warnings.showwarning
        warnings.showwarning = _showwarning
    if _hooks["after_import"] is None:
        from r1exp.patches.import_hooks import AfterImport

        _hooks["after_import"] = AfterImport(_HOOKS)
        _hooks["after_import"].install()   # a module already imported (an earlier job) is patched at once


# --- where it goes ---------------------------------------------------------------------------------------------------

class _Sink:
    """The current run's train.log, appended a message at a time (each job of a sweep run in one process has its
    own). A write that fails (the folder was removed) is dropped: output must never fail a run."""

    def __init__(self):
        self.path: Path | None = None
        self.lock = threading.Lock()

    def point(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, text: str) -> None:
        path = self.path
        if path is None or not text.strip():
            return
        with self.lock, contextlib.suppress(OSError), path.open("a", encoding="utf-8", errors="replace") as f:
            f.write(text if text.endswith("\n") else text + "\n")


_sink = _Sink()
_original: dict = {}
_hooks: dict = {"after_import": None}


@functools.lru_cache(maxsize=4096)
def library_file(path: str) -> bool:
    """A source file of an installed package or of the standard library (not r1exp's, not yours)."""
    if not path or path.startswith("<"):    # <frozen importlib._bootstrap> is Python's; <stdin>, <string> yours
        return bool(path) and path.startswith("<frozen ")
    real = os.path.realpath(path)
    if real.startswith(_OWN_DIR + os.sep):
        return False
    return "site-packages" in real or "dist-packages" in real or any(real.startswith(d + os.sep) for d in _lib_dirs())


@functools.lru_cache(maxsize=1)
def _lib_dirs() -> tuple:
    paths = sysconfig.get_paths()
    return tuple({os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)})


def from_library(record: logging.LogRecord) -> bool:
    top = record.name.split(".")[0]
    if top in OWN_LOGGERS:
        return False
    return top in LIBRARY_LOGGERS or library_file(record.pathname)


class _ToTrainLog(logging.Handler):
    """On the root logger: library records into train.log (r1exp's own records are printed, not kept here)."""

    def __init__(self):
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter(RECORD_FORMAT))

    def emit(self, record):
        if not from_library(record):
            return
        try:
            _sink.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)


class _ConsoleGate(logging.Filter):
    """On a console handler: a library's record only from ERROR up (the rest is in train.log)."""

    def filter(self, record):
        return record.levelno >= logging.ERROR or not from_library(record)


_to_train_log = _ToTrainLog()
_gate = _ConsoleGate()


def _console_handler(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def _install_root_handlers() -> None:
    """Hydra configures the root logger for every job (console and <job>.log): gate its console handlers and add
    train.log. Without a console handler (run() called outside Hydra), library errors still reach stderr."""
    root = logging.getLogger()
    if _to_train_log not in root.handlers:
        root.addHandler(_to_train_log)
    consoles = [h for h in root.handlers if _console_handler(h)]
    if not consoles:
        errors = logging.StreamHandler()
        errors.setLevel(logging.ERROR)
        root.addHandler(errors)
        consoles = [errors]
    for handler in consoles:
        if _gate not in handler.filters:
            handler.addFilter(_gate)


def reroute(logger: logging.Logger) -> None:
    """Take a library's own console handler off its logger and let its records propagate to the root logger."""
    for handler in list(logger.handlers):
        if _console_handler(handler):
            logger.removeHandler(handler)
    logger.propagate = True


def _showwarning(message, category, filename, lineno, file=None, line=None):
    if file is None and _sink.path is not None and library_file(filename):
        _sink.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    _original.get("showwarning", warnings._showwarning_orig)(message, category, filename, lineno, file, line)


# --- progress bars -----------------------------------------------------------------------------------------------

class BarFile:
    """A tqdm bar's `file`: keeps what the bar draws and writes its last state as one line of train.log when the bar
    ends its line (or closes), instead of every redraw."""

    encoding = "utf-8"   # tqdm draws its unicode bar

    def __init__(self):
        self.partial = ""
        self.last = ""

    def write(self, text: str) -> None:
        for piece in re.split(r"(\r|\n)", text):
            if piece == "\n":
                self.end_line()
            elif piece == "\r":
                self._end_segment()
            else:
                self.partial += piece

    def flush(self) -> None:
        pass

    def _end_segment(self) -> None:
        if self.partial.strip():
            self.last = self.partial
        self.partial = ""

    def end_line(self) -> None:
        self._end_segment()
        if self.last:
            _sink.write(self.last.rstrip())
        self.last = ""


@functools.cache
def bars_to_train_log(tqdm_class):
    """A subclass of `tqdm_class` drawing into train.log (a BarFile) unless a file is given."""

    class ToTrainLog(tqdm_class):
        def __init__(self, *args, **kwargs):
            self._r1exp_file = None
            if kwargs.get("file") is None and _sink.path is not None:
                kwargs["file"] = self._r1exp_file = BarFile()
            super().__init__(*args, **kwargs)

        def close(self):
            super().close()
            if self._r1exp_file is not None:
                self._r1exp_file.end_line()   # a bar with leave=False never ends its line

    ToTrainLog.__name__ = ToTrainLog.__qualname__ = tqdm_class.__name__
    return ToTrainLog


# --- C/C++ output ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def stderr_to_train_log():
    """File descriptor 2 (what C and C++ code print) appended to train.log for the block."""
    path = _sink.path
    if path is None:
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    saved = os.dup(2)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# --- the libraries, as each is imported (r1exp.patches.library_output) ----------------------------------------------

class _Output:
    """What the library hooks send their output to: this module's current train.log."""

    @property
    def path(self):
        return _sink.path

    def write(self, text: str) -> None:
        _sink.write(text)

    def reroute(self, logger) -> None:
        reroute(logger)

    def is_console_handler(self, handler) -> bool:
        return _console_handler(handler)

    def bars(self, tqdm_class):
        return bars_to_train_log(tqdm_class)

    def stderr(self):
        return stderr_to_train_log()


_HOOKS = library_output.hooks(_Output())
