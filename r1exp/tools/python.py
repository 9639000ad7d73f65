"""A Python tool: runs the model's code in a separate, isolated interpreter with time, memory and output limits.

Each call starts `python -I` (isolated mode: no user site-packages, no PYTHON* variables, the working directory not
on sys.path) in a fresh temporary folder, with an empty environment; before the code runs, the interpreter sets hard
limits on its address space (RLIMIT_AS), CPU seconds (RLIMIT_CPU), core files and open files (64), and a wall-clock limit after which the whole
process group is killed. It is a guard against runaway code, not a security boundary: the code runs as your user
and can reach the network and your files; run untrusted policies in a container.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

MAX_CODE_CHARS = 10_000


def python(code: str, time_limit_s: float = 5.0, memory_mb: int = 512, max_output_chars: int = 2000) -> str:
    """Run a short Python program and return what it prints.

    Args:
        code: The Python source to run; print() what you want to see, e.g. "print(sum(range(101)))".

    Returns:
        The program's standard output (and its error message if it failed), cut to a few thousand characters.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a string, got {type(code).__name__}")
    if len(code) > MAX_CODE_CHARS:
        raise ValueError(f"the code is longer than {MAX_CODE_CHARS} characters")
    with tempfile.TemporaryDirectory(prefix="r1exp-python-") as folder:
        proc = subprocess.Popen([sys.executable, "-I", "-c", _bootstrap(time_limit_s, memory_mb)], cwd=folder,
                                env={"PATH": os.defpath}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(code.encode(), timeout=time_limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimeoutError(f"the code ran longer than {time_limit_s:g} s") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()
        reason = last[-1] if last else _signal_name(proc.returncode)
        text += ("\n" if text else "") + f"error: {reason}"
    return text[:max_output_chars] if len(text) <= max_output_chars else text[:max_output_chars] + "\n...(cut)"


def _bootstrap(time_limit_s: float, memory_mb: int) -> str:
    """What the interpreter runs first: the hard limits (the code cannot raise them again), then the code read from
    its standard input as the `__main__` module."""
    cpu, memory = max(1, int(time_limit_s) + 1), int(memory_mb) * 1024 * 1024
    return ("import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n"
            f"resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))\n"
            "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
            "source = sys.stdin.read()\n"
            "del resource\n"
            "exec(compile(source, '<tool>', 'exec'), {'__name__': '__main__'})\n")


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name} (a time or memory limit)"
        except ValueError:
            pass
    return f"exit status {returncode}"
