"""Which names are credentials: the one definition the config checks and the records share (`WANDB_API_KEY`,
`hf_token`, `api_key`, `db_password` are; `pad_token`, `sort_key`, `num_tokens` are not). Redaction itself, of
what r1exp writes, is r1exp.records.secrets."""

from __future__ import annotations

import re

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
