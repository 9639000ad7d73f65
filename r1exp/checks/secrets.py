"""The config's row about credentials: no secret in trainer.*, where the HF Trainer would pickle it.

What r1exp writes (run.json, .hydra/*.yaml, W&B) is redacted by r1exp.records.secrets; this row stops what cannot be
redacted afterwards."""

from __future__ import annotations

from omegaconf import OmegaConf

from r1exp.config.rule import Rule
from r1exp.config.secret_names import REDACTED, is_secret_name
from r1exp.errors import Problem
from r1exp.records.secrets import secret_values

# The HF Trainer pickles its TrainingArguments whole into training_args.bin (in adapter/, in every checkpoint, and in
# the W&B model artifact); a pickle cannot be scrubbed the way r1exp's own files are, so a secret is refused before
# it gets there. The environment is the place for credentials: huggingface_hub reads HF_TOKEN, W&B WANDB_API_KEY.
ENV_FOR = {"hub_token": "HF_TOKEN", "push_to_hub_token": "HF_TOKEN"}


def trainer_secrets(ctx):
    trainer = OmegaConf.select(ctx.cfg, "trainer", default=None)
    if not OmegaConf.is_dict(trainer):
        return
    values = secret_values()
    for key, value in _leaves(OmegaConf.to_container(trainer, resolve=True), "trainer"):
        leaf = key.rsplit(".", 1)[-1]
        by_name = is_secret_name(leaf) and value not in (None, "")
        if not by_name and not (isinstance(value, str) and any(v in value for v in values)):
            continue
        env = ENV_FOR.get(leaf, "HF_TOKEN" if "hub" in leaf else "the variable the library reads")
        why = (f"{key} holds a credential" if by_name else f"{key} holds the value of a secret environment variable")
        yield Problem(key, REDACTED, why + ": the HF Trainer pickles its arguments into training_args.bin (adapter/, "
                      "every checkpoint, the W&B artifact), where it would be stored in plain text",
                      f"drop {key} and keep the secret in the environment ({env}); the hub and W&B clients read it "
                      "from there", rule="secrets.trainer")


def _leaves(obj, prefix: str):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


RULES: list[Rule] = [
    Rule("secrets.trainer", ("trainer.*",), trainer_secrets,
         doc="no credential in trainer.* (the HF Trainer pickles its arguments into training_args.bin)"),
]
