"""Keeping API keys and tokens out of everything r1exp writes: run.json, .hydra/*.yaml, W&B config and metadata, and
the prompts and completions TRL logs (completions tables, W&B tables; r1exp.observe.tracking.prepare_completions_table).

Two nets, because a secret arrives either under a telling name or as a bare value somewhere else:
- by name: a config key, override or environment variable whose name reads like a credential (`WANDB_API_KEY`,
  `hf_token`, `logger.api_key`, `db_password`, ...) has its value replaced by `<redacted>`;
- by value: the value of every such environment variable is cut out of any string it turns up in (a command line,
  an error message, a path, a prompt), whatever the name around it; so is a token recognisable by its form alone
  (TOKEN_FORMS: `hf_...`, `sk-...`, `ghp_...`, `AKIA...`).

Special-token names of tokenizers (`pad_token`, `eos_token`) and counters (`num_tokens`) are not secrets. Values
that are interpolations (`${oc.env:HF_TOKEN}`) are kept: they name where the secret comes from, not the secret,
and let a reproduction read it from the environment again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from r1exp.config.secret_names import REDACTED, is_secret_name

MIN_SECRET_LENGTH = 6  # shorter environment values ("1", "true") are not cut out of text
# `key=value` (an override) or `key: value` (inside a Hydra dict override, `+reward.judge={api_key: ...}`)
_ASSIGNMENT = re.compile(r"(?P<key>[A-Za-z_][\w.-]*)(?P<sep>=|:[ \t]*)(?P<value>\$\{[^}]*\}|[^\s,'\"{}\[\]]+)")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@", re.I)
# Credentials recognisable by their form alone, wherever they stand (a prompt, an error message): the published
# prefixes of Hugging Face, OpenAI / Anthropic, GitHub, Slack and AWS keys, followed by the long random part that
# ordinary text never has. A W&B key (40 hex digits, like a git commit) has no such form: it is caught by value.
TOKEN_FORMS = re.compile(r"(?<![A-Za-z0-9_-])(?:hf_[A-Za-z0-9]{30,}|sk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{20,}"
                         r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9-]{20,}"
                         r"|AKIA[0-9A-Z]{16})(?![A-Za-z0-9_-])")


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
    text = TOKEN_FORMS.sub(REDACTED, text)
    text = _ASSIGNMENT.sub(_redact_assignment, text)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def secrets_in(text: str, environ=None) -> list[str]:
    """What makes `text` hold a secret, named without the secret: `the value of $HF_TOKEN`, `a token of the form
    hf_...`, `api_key=...`, `a password in a URL`. Empty when redact_text leaves it as it is."""
    env = os.environ if environ is None else environ
    found = [f"the value of ${k}" for k, v in sorted(env.items())
             if is_secret_name(k) and len(v or "") >= MIN_SECRET_LENGTH and v in text]
    found += [f"a token of the form {re.match(r'AKIA|[A-Za-z]+[_-]', m[0])[0]}..." for m in TOKEN_FORMS.finditer(text)]
    found += [f"{m['key']}=..." for m in _ASSIGNMENT.finditer(text) if _redact_assignment(m) != m[0]]
    found += ["a password in a URL" for _ in _URL_PASSWORD.finditer(text)]
    return list(dict.fromkeys(found))


def _redact_assignment(m: re.Match) -> str:
    if is_secret_name(m["key"]) and not _is_interpolation(m["value"]) and m["value"] != REDACTED:
        return f"{m['key']}{m['sep']}{REDACTED}"
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


def redact_values(obj, values: set[str] | None = None):
    """A copy of any nested data (chat messages, table cells: dicts, lists, tuples, strings) with every string
    passed through redact_text; the names of dict keys are kept (a message's `content` is not a secret's name)."""
    values = secret_values() if values is None else values
    if isinstance(obj, str):
        return redact_text(obj, values)
    if isinstance(obj, dict):
        return {k: redact_values(v, values) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_values(v, values) for v in obj)
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
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:   # atomically: a full disk leaves the file as it was, not half of it
            OmegaConf.save(OmegaConf.create(clean), tmp)
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)
            path.unlink(missing_ok=True)   # it holds a secret it could not be cleaned of: not kept
            raise
    return clean != original


def scrub_hydra_files(run_dir: Path) -> list[str]:
    """Rewrite the run's .hydra/*.yaml (Hydra saves them before r1exp runs) without secrets; the names changed."""
    return [path.name for path in sorted((Path(run_dir) / ".hydra").glob("*.yaml")) if scrub_yaml(path)]
