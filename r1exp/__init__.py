"""r1exp: Hydra-configured GRPO experiments, checked before any weight is loaded."""

__version__ = "0.1.0"

from r1exp.models.size_class import register as _register_resolvers

_register_resolvers()   # ${r1exp.size:KEY} (conf/model/pretrained.yaml), wherever r1exp composes or resolves a config
