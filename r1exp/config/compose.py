"""Composing configs the way `python -m r1exp ARGS` will, before Hydra creates any run folder.

The entry point composes every job of the command line first (one for a single run; for a multirun, every value of
every swept key), so a wrong option or key is reported in a second with exit status 2, and a sweep is checked
before its first job starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# Hydra flags that do not start a run: hand them to Hydra untouched.
PASSTHROUGH_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
                     "--version", "--resolve", "--package", "-p")
VALUE_FLAGS = {"--config-path": "config_path", "-cp": "config_path", "--config-name": "config_name",
               "-cn": "config_name", "--config-dir": "config_dir", "-cd": "config_dir",
               "--experimental-rerun": "rerun"}


@dataclass
class CommandLine:
    overrides: list = field(default_factory=list)
    multirun: bool = False
    passthrough: bool = False
    config_name: str = "config"
    config_dir: str | None = None
    config_path: str | None = None
    rerun: str | None = None


def parse_command_line(argv: list[str]) -> CommandLine:
    cl = CommandLine()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if arg in ("-m", "--multirun"):
            cl.multirun = True
        elif name in VALUE_FLAGS:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            setattr(cl, VALUE_FLAGS[name], value)
        elif name in PASSTHROUGH_FLAGS:
            cl.passthrough = True
        elif arg.startswith("-"):
            cl.passthrough = True  # an unknown flag: let Hydra's own parser say what it thinks
        else:
            cl.overrides.append(arg)
        i += 1
    return cl


def choose_model_by_name(overrides: list[str]) -> list[str]:
    """`model.name_or_path=X` with no `model=` (or `experiment=`) choice names a model by itself: add `model=pretrained`
    so that X's own config.json and the settings of its size class are used, not the default model's shape and
    demo settings (conf/model/pretrained.yaml). Only for r1exp's primary config, whose defaults choose a model (a
    reproduction's saved config has no groups left to choose)."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    if "model.name_or_path" in keys and not keys & {"model", "experiment"}:
        return [*overrides, "model=pretrained"]
    return list(overrides)


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to check: one per swept value (others at their first value), or the list itself.

    Keys under `hydra.` configure Hydra itself and are left to it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    own = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    if not multirun:
        return [own]
    parsed = OverridesParser.create().parse_overrides(own)
    choices = []
    for text, ov in zip(own, parsed):
        if ov.is_sweep_override():
            key = ov.get_key_element()
            choices.append([f"{key}={v}" for v in _sweep_values(ov)])
        else:
            choices.append([text])
    jobs = [[c[0] for c in choices]]
    for i, values in enumerate(choices):
        for v in values[1:]:
            job = [c[0] for c in choices]
            job[i] = v
            jobs.append(job)
    return jobs


def _sweep_values(ov) -> list[str]:
    """The values to check of a swept key: every one of a list or range, both ends of an (Optuna) interval."""
    if ov.is_discrete_sweep():
        return list(ov.sweep_string_iterator())
    interval = ov.value()
    return [str(interval.start), str(interval.end)]


def sweep_overrides(overrides: list[str], multirun: bool, config_name: str = "config",
                    config_dir: str | Path | None = None) -> list[str]:
    """A multirun's overrides as its sweeper sees them: the config's own `hydra.sweeper.params` (a ready sweep in
    sweeps/ is such a config) first, then the command line, whose keys win."""
    if not multirun:
        return list(overrides)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    fixed = [text for text, ov in zip(overrides, parsed) if not ov.is_sweep_override()]
    given = {ov.get_key_element().lstrip("+~") for ov in parsed}
    cfg = compose(fixed, config_name, config_dir, return_hydra_config=True)
    params = cfg.hydra.sweeper.get("params") or {}
    return [f"{k}={v}" for k, v in params.items() if str(k).lstrip("+~") not in given] + list(overrides)


def compose(overrides: list[str], config_name: str = "config", config_dir: str | Path | None = None,
            return_hydra_config: bool = False):
    """The composed config for one job (Hydra's compose API; raises Hydra's exceptions on bad input).

    A config_dir other than conf/ (sweeps/, a reproduction's saved config) is searched first, conf/ after it, as
    `python -m r1exp --config-dir DIR` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    folder = Path(config_dir or CONF_DIR).resolve()
    extra = [] if folder == CONF_DIR.resolve() else [f"hydra.searchpath=[file://{CONF_DIR.resolve()}]"]
    if extra and not (folder / f"{config_name}.yaml").exists():  # a folder of group files only (e.g. your cluster's
        folder, extra = CONF_DIR.resolve(), [f"hydra.searchpath=[file://{folder}]"]  # hydra/launcher): conf/ is primary
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        chosen = choose_model_by_name(overrides) if config_name == "config" else list(overrides)
        return hydra_compose(config_name=config_name, overrides=extra + chosen,
                             return_hydra_config=return_hydra_config)
