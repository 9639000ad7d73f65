"""Problems found in a run's configuration, and how they are shown to a person.

A `Problem` is one readable block: the key, the value, why it is wrong, and the fix. Validation collects all of
them at once; the entry point prints them and exits with status 2 (a user's mistake, never a traceback).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_RUNTIME = 1   # the run itself failed (the run folder is marked failed)
EXIT_USAGE = 2     # the configuration or the machine cannot run this (nothing was started)


@dataclass(frozen=True)
class Problem:
    key: str
    value: object
    why: str
    fix: str
    rule: str = ""
    severity: str = "error"  # error | warning

    def render(self) -> str:
        head = "error" if self.severity == "error" else "warning"
        tag = f" [{self.rule}]" if self.rule else ""
        return f"{head}{tag}: {self.key} = {self.value!r}\n  why: {self.why}\n  fix: {self.fix}"


@dataclass
class ConfigError(Exception):
    """Raised with every problem found; the entry point turns it into exit status 2."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return render_problems(self.problems)


class RunStopped(RuntimeError):
    """A stop r1exp designed, during a run that had started (a broken or a too slow reward): the message says why and
    what to do; the run ends `failed` with exit status 1 and no traceback on the console (error.txt keeps it)."""

    def __init__(self, message: str = "", problems: list[Problem] | None = None):
        self.problems = list(problems or [])
        super().__init__(message or render_problems(self.problems))


def render_problems(problems: list[Problem]) -> str:
    return "\n\n".join(p.render() for p in problems)


def errors_of(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


# --- a full disk -------------------------------------------------------------------------------------------------

# The errors a file system gives when it has no room left: no space, or the user's quota used up.
_DISK_FULL_ERRNOS = frozenset(e for e in (getattr(errno, n, None) for n in ("ENOSPC", "EDQUOT")) if e)
# What libraries that do not raise OSError (safetensors, pyarrow, W&B) say about the same condition.
_DISK_FULL_TEXT = ("no space left on device", "os error 28", "errno 28", "disk quota exceeded")


def is_disk_full(exc: BaseException | None) -> bool:
    """`exc`, or an exception it was raised from or while handling, says the file system is full."""
    return disk_full_cause(exc) is not None


def disk_full_cause(exc: BaseException | None) -> BaseException | None:
    """The exception in `exc`'s chain (itself, __cause__, __context__) that says the disk is full; None if none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return exc
        if any(text in str(exc).lower() for text in _DISK_FULL_TEXT):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_reason(exc: BaseException | None, where=None) -> str | None:
    """`disk full: no space left on device writing <file> (<n> bytes free on <folder>'s file system)`, when
    `exc` is a full disk; None otherwise. `where` names the file or folder being written when the exception does
    not (safetensors and pyarrow report no file name)."""
    import shutil
    from pathlib import Path

    cause = disk_full_cause(exc)
    if cause is None:
        return None
    target = getattr(cause, "filename", None) or where
    quota = isinstance(cause, OSError) and cause.errno == getattr(errno, "EDQUOT", -1)
    what = "disk quota exceeded" if quota else "no space left on device"
    text = f"disk full: {what}" + (f" writing {target}" if target else "")
    probe = Path(where or target or ".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
        text += f" ({_size(usage.free)} of {_size(usage.total)} left free on that file system)"
    except OSError:
        pass
    return text


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
