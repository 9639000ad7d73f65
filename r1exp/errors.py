"""Problems found in a run's configuration, and how they are shown to a person.

A `Problem` is one readable block: the key, the value, why it is wrong, and the fix. Validation collects all of
them at once; the entry point prints them and exits with status 2 (a user's mistake, never a traceback).
"""

from __future__ import annotations

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
