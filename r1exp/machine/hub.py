"""The Hugging Face Hub as a check sees it, in well under two seconds: where the local caches are, whether the hub
may be asked (offline flags), what a cached repository holds, and one short question to the hub.

The cache paths follow `huggingface_hub.constants` and `datasets.config` (HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE /
HF_HOME / XDG_CACHE_HOME, HF_DATASETS_CACHE), read from the environment at each call; importing
huggingface_hub's download code costs more than a whole dry run, so the cache is read as folders, and
huggingface_hub's own API (`HfApi.model_info` / `dataset_info`) is imported only when a repository is not cached
and the hub may be asked.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

TRUE = {"1", "ON", "YES", "TRUE"}        # huggingface_hub.constants.ENV_VARS_TRUE_VALUES
ASK_TIMEOUT_S = 2.0                       # the longest a check waits for the hub
REPO_ID = re.compile(r"^(?:[\w\-.]+/)?[\w\-.]+$")


def _true(name: str) -> bool:
    return (os.environ.get(name) or "").upper() in TRUE


def offline(datasets: bool = False) -> str | None:
    """The variable that puts the hub offline (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE; HF_DATASETS_OFFLINE for data),
    None when the hub may be asked."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") + (("HF_DATASETS_OFFLINE",) if datasets else ())
    return next((f"{n}={os.environ[n]}" for n in names if _true(n)), None)


def hf_home() -> Path:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                           "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(os.environ.get("HF_HOME") or default)))


def hub_cache() -> Path:
    legacy = os.environ.get("HUGGINGFACE_HUB_CACHE") or str(hf_home() / "hub")
    return Path(os.path.expandvars(os.path.expanduser(os.environ.get("HF_HUB_CACHE") or legacy)))


def datasets_cache() -> Path:
    return Path(os.path.expanduser(os.environ.get("HF_DATASETS_CACHE") or str(hf_home() / "datasets")))


def has_token() -> bool:
    """A Hugging Face token is configured (HF_TOKEN, the legacy variable, or `hf auth login`'s token file)."""
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    path = os.environ.get("HF_TOKEN_PATH") or str(hf_home() / "token")
    try:
        return bool(Path(os.path.expanduser(path)).read_text().strip())
    except OSError:
        return False


def is_repo_id(text: str) -> bool:
    """`name` or `owner/name` as the hub spells them (huggingface_hub.utils.validate_repo_id's rules)."""
    return (bool(REPO_ID.match(text)) and len(text) <= 96 and "--" not in text and ".." not in text
            and not text.endswith(".git") and not text.startswith((".", "-")))


def cached_snapshot(repo_id: str, kind: str = "model") -> Path | None:
    """The cached snapshot folder of a repository (the one refs/main points at, else the newest), or None."""
    root = hub_cache() / f"{kind}s--{repo_id.replace('/', '--')}"
    snapshots = root / "snapshots"
    try:
        ref = (root / "refs" / "main").read_text().strip()
        if (snapshots / ref).is_dir():
            return snapshots / ref
    except OSError:
        pass
    try:
        found = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _snake(name: str) -> str:
    """datasets.naming.camelcase_to_snakecase: the folder name `datasets` gives a dataset in its cache."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def dataset_cached(repo_id: str, subset: str | None = None) -> Path | None:
    """Where `datasets` can load a hub dataset from without the network: its prepared copy (HF_DATASETS_CACHE/
    owner___name/<subset>/...) or the repository's files in the hub cache; None when neither is there."""
    parts = repo_id.split("/")
    parts[-1] = _snake(parts[-1])
    prepared = datasets_cache() / "___".join(parts)
    configs = [prepared / subset] if subset else ([p for p in prepared.iterdir() if p.is_dir()]
                                                 if prepared.is_dir() else [])
    for config in configs:
        if any(version.is_dir() for version in config.glob("*/*")):
            return config
    snapshot = cached_snapshot(repo_id, "dataset")
    return snapshot if snapshot is not None and any(snapshot.iterdir()) else None


@dataclass(frozen=True)
class HubAnswer:
    status: str                  # found | missing | unreachable
    detail: str = ""             # what the hub (or the network) said
    gated: bool = False
    files: tuple = field(default_factory=tuple)   # the repository's file names, when found


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def reachable(timeout: float) -> str | None:
    """None when the hub's host accepts a connection within `timeout` s, else why not (no name lookup, refused)."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint())
    try:
        with socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=timeout):
            return None
    except (OSError, ValueError) as e:
        return f"{url.hostname}: {getattr(e, 'strerror', None) or e}"


_ASKED: dict = {}   # (endpoint, kind, repo_id) -> HubAnswer: a sweep's jobs ask once


def ask(repo_id: str, kind: str = "model", timeout: float = ASK_TIMEOUT_S) -> HubAnswer:
    key = (endpoint(), kind, repo_id)
    if key not in _ASKED:
        _ASKED[key] = _ask(repo_id, kind, timeout)
    return _ASKED[key]


def _ask(repo_id: str, kind: str, timeout: float) -> HubAnswer:
    """Ask the hub about a repository with huggingface_hub's API, waiting at most `timeout` seconds in all (the call
    runs in a thread: a hanging name lookup cannot hold the check). A host that does not answer a connection is
    "unreachable" before huggingface_hub is even imported. HF_ENDPOINT is honoured."""
    box: dict = {}

    def call():
        why = reachable(timeout)
        if why:
            box["answer"] = HubAnswer("unreachable", f"no connection to {why}")
            return
        try:
            from huggingface_hub import HfApi
            from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
        except ImportError as e:
            box["answer"] = HubAnswer("unreachable", f"huggingface_hub is not installed ({e})")
            return
        try:
            api = HfApi(endpoint=endpoint())
            info = (api.model_info if kind == "model" else api.dataset_info)(repo_id, timeout=timeout)
            box["answer"] = HubAnswer("found", gated=bool(getattr(info, "gated", False)),
                                      files=tuple(s.rfilename for s in (info.siblings or ())))
        except GatedRepoError as e:
            box["answer"] = HubAnswer("found", _first_line(e), gated=True)
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            box["answer"] = HubAnswer("missing", _first_line(e))
        except Exception as e:  # noqa: BLE001 - a proxy, a 5xx, a timeout: the hub cannot be asked from here
            box["answer"] = HubAnswer("unreachable", f"{type(e).__name__}: {_first_line(e)}")

    worker = threading.Thread(target=call, daemon=True, name="r1exp-hub-check")
    worker.start()
    worker.join(2 * timeout + 1.0)   # the connection test and the request each wait at most `timeout` (+ the import)
    return box.get("answer") or HubAnswer("unreachable", f"no answer within {timeout:.0f} s")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
