"""r1exp: Hydra-configured GRPO experiments, checked before any weight is loaded."""

__version__ = "0.1.0"
