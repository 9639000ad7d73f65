"""A run folder is data, not code: what `reproduce`, `resume` and `eval` take from a folder someone else made.

They take the r1exp config the folder saved and nothing of Hydra's own (`hydra:` — callbacks, launcher, sweeper, job
settings — and a `defaults` list come from this installation: `config_of_folder`). Every `_target_` the config names
is code that building the run would import and call (a custom reward, an engine or a loader class); r1exp's own
are trusted, any other must be allowed by the person running the command (`--trust`, or `--allow=module.name` for
one) before anything is imported (`untrusted_targets`): a folder's `_target_: torch.hub.load` would otherwise run the
`hubconf.py` of a folder it names, inside the reward sanity check.
"""

from __future__ import annotations

OWN = ("r1exp.",)                    # r1exp's own components and rewards
NOT_THE_RUN = ("hydra", "defaults")  # Hydra's settings: never taken from a folder
# Keys other than `_target_` whose values are import paths r1exp imports (a list of them, or one)
CODE_KEYS = ("model.warmup.tools.functions",)   # the tools a locally built model is warmed up to call


def config_of_folder(config: dict) -> dict:
    """The saved config without what configures Hydra rather than the run."""
    return {k: v for k, v in config.items() if k not in NOT_THE_RUN}


def named_targets(config, path: str = "") -> list[tuple[str, str]]:
    """(key, target) for every `_target_` in a plain config, depth first."""
    found = []
    if isinstance(config, dict):
        for key, value in config.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_" and isinstance(value, str):
                found.append((path or "(top level)", value))
            else:
                found += named_targets(value, where)
    elif isinstance(config, list):
        for i, value in enumerate(config):
            found += named_targets(value, f"{path}[{i}]")
    return found


def named_code(config: dict) -> list[tuple[str, str]]:
    """(key, import path) for every `_target_` and every value of a CODE_KEYS key in a plain config."""
    found = named_targets(config)
    for dotted in CODE_KEYS:
        node = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values = node if isinstance(node, list) else [node] if node is not None else []
        found += [(f"{dotted}[{i}]", str(v)) for i, v in enumerate(values)]
    return found


def untrusted_targets(config: dict, allowed: tuple = (), trust_all: bool = False) -> list[tuple[str, str]]:
    """The import paths a folder's config names (`_target_`s and CODE_KEYS) that are neither r1exp's own nor
    allowed."""
    if trust_all:
        return []
    return [(key, target) for key, target in named_code(config)
            if not target.startswith(OWN) and target not in allowed]


def refusal(folder, targets: list[tuple[str, str]], command: str) -> str:
    listed = "\n".join(f"    {key}: {target}" for key, target in targets)
    allow = " ".join(f"--allow={t}" for t in sorted({t for _, t in targets}))
    return (f"{folder} names code r1exp would import and run, and it is not r1exp's own:\n{listed}\n"
            f"  nothing was imported and nothing was written.\n"
            f"  fix: read the code each names; if you trust it: {command} {folder} {allow} (or --trust for all)")
