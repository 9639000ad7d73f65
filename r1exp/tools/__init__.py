"""Tools and environments for multi-turn GRPO (TRL's `tools=` and `environment_factory=`).

`conf/tools/<label>.yaml` selects a tool like a reward (`tools=[calculator]`); `conf/environment/<name>.yaml` an
environment (`environment=arithmetic_env`; `none` by default). The pre-flight (r1exp/tools/rules.py) checks them
before anything loads; the build (`build_tools`, `build_environment`) hands TRL the bound callables.
"""

from __future__ import annotations

from r1exp.tools.binding import bind, environment_settings, settings_of


def target_of(entry):
    from hydra.utils import get_method

    return get_method(str(entry["_target_"]))


def build_tools(tools_cfg) -> list:
    """The configured tools as TRL calls them, in config order ([] when none is selected)."""
    from omegaconf import OmegaConf

    if not tools_cfg:
        return []
    out = []
    for entry in OmegaConf.to_container(tools_cfg, resolve=True).values():
        out.append(bind(target_of(entry), settings_of(entry), entry.get("time_limit_s")))
    return out


def build_environment(env_cfg):
    """TRL's `environment_factory`: a callable that makes one environment per rollout, its settings bound (None when
    no environment is selected)."""
    import functools

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    if not env_cfg or not env_cfg.get("_target_"):
        return None
    entry = OmegaConf.to_container(env_cfg, resolve=True)
    return functools.partial(get_class(str(entry["_target_"])), **environment_settings(entry))
