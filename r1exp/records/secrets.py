"""Keeping API keys and tokens out of everything r1exp writes: run.json, .hydra/*.yaml, W&B config and metadata.

Two nets, because a secret arrives either under a telling name or as a bare value somewhere else:
- by name: a config key, override or environment variable whose name reads like a credential (`WANDB_API_KEY`,
  `hf_token`, `logger.api_key`, `db_password`, ...) has its value replaced by `<redacted>`;
- by value: the value of every such environment variable is cut out of any string it turns up in (a command line,
  an error message, a path), whatever the name around it.

Special-token names of tokenizers (`pad_token`, `eos_token`) and counters (`num_tokens`) are not secrets. Values
that are interpolations (`${oc.env:HF_TOKEN}`) are kept: they name where the secret comes from, not the secret,
and let a reproduction read it from the environment again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REDACTED = "<redacted>"
# The last word of a name that makes it a credential on its own.
SECRET_WORDS = {"secret", "secrets", "password", "passwd", "passphrase", "credential", "credentials", "apikey",
                "auth", "token"}
# `<word>_key` is a credential for these words (`sort_key` or `answer_key` are not).
KEY_OWNERS = {"api", "access", "private", "secret", "auth", "wandb", "openai", "anthropic", "hf", "license", "ssh",
              "signing", "encryption", "session", "service", "client", "master"}
# `<word>_token` names that are tokenizer vocabulary, not credentials.
NOT_CREDENTIAL_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "image", "video", "audio",
                         "start", "end", "think", "answer", "vision", "boi", "eoi"}
MIN_SECRET_LENGTH = 6  # shorter environment values ("1", "true") are not cut out of text
_ASSIGNMENT = re.compile(r"(?P<key>[A-Za-z_][\w.-]*)=(?P<value>\$\{[^}]*\}|[^\s,'\"]+)")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@", re.I)


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def is_secret_name(name: str) -> bool:
    """True for names such as WANDB_API_KEY, HF_TOKEN, logger.api_key, db_password; false for pad_token."""
    words = _words(str(name).rsplit(".", 1)[-1])
    if not words:
        return False
    last, before = words[-1], (words[-2] if len(words) > 1 else "")
    if last == "token":
        return before not in NOT_CREDENTIAL_TOKENS
    if last == "key":
        return before in KEY_OWNERS or len(words) == 1
    return last in SECRET_WORDS or "apikey" in words


def secret_values(environ=None) -> set[str]:
    """The values of secret-named environment variables long enough to be recognised in text."""
    env = os.environ if environ is None else environ
    return {v for k, v in env.items() if is_secret_name(k) and len(v or "") >= MIN_SECRET_LENGTH}


def redact_text(text: str, values: set[str] | None = None) -> str:
    """Free text (a command line argument, an error message) without secret values, `api_key=...` assignments or
    passwords in URLs."""
    values = secret_values() if values is None else values
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _ASSIGNMENT.sub(_redact_assignment, text)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def _redact_assignment(m: re.Match) -> str:
    if is_secret_name(m["key"]) and not _is_interpolation(m["value"]) and m["value"] != REDACTED:
        return f"{m['key']}={REDACTED}"
    return m[0]


def _is_interpolation(value) -> bool:
    return isinstance(value, str) and value.strip().startswith("${") and value.strip().endswith("}")


def redact(obj, values: set[str] | None = None):
    """A copy of a plain config (dicts, lists, scalars) with secret-named entries and secret values removed."""
    values = secret_values() if values is None else values
    if isinstance(obj, dict):
        return {k: (REDACTED if _hides(k, v) else redact(v, values)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v, values) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, values)
    return obj


def _hides(name, value) -> bool:
    return is_secret_name(str(name)) and value not in (None, "") and not _is_interpolation(value) \
        and not isinstance(value, (dict, list))


def redact_argv(argv: list[str], values: set[str] | None = None) -> list[str]:
    """A command line with `some.api_key=VALUE` overrides and known secret values replaced."""
    values = secret_values() if values is None else values
    return [redact_text(str(arg), values) for arg in argv]


def redacted_keys(obj, prefix: str = "") -> list[str]:
    """Dotted keys whose value was redacted when saved (a reproduction must be given them again)."""
    if obj == REDACTED:
        return [prefix.rstrip(".")]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [key for k, v in items for key in redacted_keys(v, f"{prefix}{k}.")]


def scrub_yaml(path: Path) -> bool:
    """Rewrite a YAML file Hydra saved (config, overrides, multirun.yaml) without secrets; whether it changed."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.exists():
        return False
    original = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    clean = redact(original)
    if clean != original:
        OmegaConf.save(OmegaConf.create(clean), path)
    return clean != original


def scrub_hydra_files(run_dir: Path) -> list[str]:
    """Rewrite the run's .hydra/*.yaml (Hydra saves them before r1exp runs) without secrets; the names changed."""
    return [path.name for path in sorted((Path(run_dir) / ".hydra").glob("*.yaml")) if scrub_yaml(path)]


# --- a validation rule: no secret reaches the trainer's arguments ------------------------------------------------
# The HF Trainer pickles its TrainingArguments whole into training_args.bin (in adapter/, in every checkpoint, and in
# the W&B model artifact); a pickle cannot be scrubbed the way r1exp's own files are, so a secret is refused before
# it gets there. The environment is the place for credentials: huggingface_hub reads HF_TOKEN, W&B WANDB_API_KEY.
ENV_FOR = {"hub_token": "HF_TOKEN", "push_to_hub_token": "HF_TOKEN"}


def trainer_secrets(ctx):
    from omegaconf import OmegaConf

    from r1exp.errors import Problem

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


def secret_rules() -> list:
    """Rows of the rules table (gathered by r1exp.checks.validate)."""
    from r1exp.config.rule import Rule

    return [Rule("secrets.trainer", ("trainer.*",), trainer_secrets,
                 doc="no credential in trainer.* (the HF Trainer pickles its arguments into training_args.bin)")]
