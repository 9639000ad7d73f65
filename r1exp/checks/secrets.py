"""The config's rows about credentials: no secret in trainer.*, where the HF Trainer would pickle it; a warning for
one in the prompts (data.*), which the model sees and r1exp redacts in everything it writes.

What r1exp writes (run.json, .hydra/*.yaml, W&B) is redacted by r1exp.records.secrets; this row stops what cannot be
redacted afterwards."""

from __future__ import annotations

from omegaconf import OmegaConf

from r1exp.config.rule import Rule
from r1exp.config.secret_names import REDACTED, is_secret_name
from r1exp.errors import Problem
from r1exp.records.secrets import secret_values, secrets_in

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


def prompt_secrets(ctx):
    """A secret in the prompts' text (data.system_prompt, ...): the model sees it in every prompt, as asked; what r1exp
    and TRL write of the prompts (run.json, .hydra, completions tables, W&B) carries `<redacted>` instead. Said
    before the run, naming what was found, never the value."""
    data = OmegaConf.select(ctx.cfg, "data", default=None)
    if not OmegaConf.is_dict(data):
        return
    try:
        leaves = list(_leaves(OmegaConf.to_container(data, resolve=True), "data"))
    except Exception:  # noqa: BLE001 - an interpolation that does not resolve is another row's problem
        return
    for key, value in leaves:
        found = secrets_in(value) if isinstance(value, str) else []
        if not found:
            continue
        yield Problem(key, REDACTED, f"{key} holds what looks like a secret ({', '.join(found)}): the model sees it "
                      f"in every prompt, and r1exp writes it as {REDACTED} in run.json, .hydra/, the completions "
                      "tables (trainer/completions/*.parquet) and W&B",
                      f"take the secret out of {key} unless the model must see it; credentials belong in the "
                      "environment, where the libraries read them", rule="secrets.prompt", severity="warning")


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
    Rule("secrets.prompt", ("data.*",), prompt_secrets,
         doc="a secret in the prompts (data.system_prompt) is named (never shown) and written as <redacted>"),
]
