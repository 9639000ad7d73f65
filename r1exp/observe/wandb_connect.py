"""Which W&B mode a run logs in, and starting W&B without ever letting the network kill the run.

- `logger.mode: auto` follows the user's environment first: WANDB_MODE (online | offline | disabled) or
  WANDB_DISABLED=true win; without them, online when an API key is configured (WANDB_API_KEY or ~/.netrc), offline
  otherwise. An explicit `logger.mode` is taken as given.
- Online needs the W&B server (WANDB_BASE_URL, default api.wandb.ai) to answer: it is probed first (a TCP connect,
  PROBE_TIMEOUT_S), and a server that cannot be reached, or a `wandb.init` that fails online (a rejected key, a
  server error, its own timeout), falls back to offline with a warning. The run goes on, its W&B files are in the
  run folder, and `wandb sync` uploads them later.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

MODES = ("online", "offline", "disabled")
PROBE_TIMEOUT_S = 5.0
DEFAULT_URL = "https://api.wandb.ai"


def mode_for(logger_cfg, environ=None) -> str:
    env = os.environ if environ is None else environ
    mode = str(logger_cfg.get("mode", "auto"))
    if mode != "auto":
        return mode
    if str(env.get("WANDB_DISABLED", "")).strip().lower() in ("true", "1", "yes"):
        return "disabled"
    chosen = str(env.get("WANDB_MODE", "")).strip().lower()
    if chosen in MODES:
        return chosen
    if chosen == "dryrun":  # W&B's old name for offline
        return "offline"
    if env.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(env.get("NETRC", Path.home() / ".netrc"))
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def server(environ=None) -> tuple[str, int]:
    env = os.environ if environ is None else environ
    url = urlparse(env.get("WANDB_BASE_URL") or DEFAULT_URL)
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def reachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the W&B server accepts a connection, else why not."""
    host, port = server()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host}:{port} cannot be reached ({e.strerror or type(e).__name__})"


def init(wandb, mode: str, **kwargs) -> str:
    """wandb.init in `mode`; online falls back to offline (with a warning) when W&B cannot be reached or refuses.
    Returns the mode the run logs in."""
    if mode == "online":
        why = reachable()
        if why is None:
            try:
                wandb.init(mode="online", **kwargs)
                return "online"
            except Exception as e:  # noqa: BLE001 - the run must not die for its logger
                why = f"wandb.init failed online: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                _finish_quietly(wandb)
        warn(why)
        mode = "offline"
        os.environ["WANDB_MODE"] = mode
    wandb.init(mode=mode, **kwargs)
    return mode


def warn(why: str) -> None:
    from r1exp.records.secrets import redact_text

    print(f"r1exp: warning: W&B online is not available: {redact_text(why)}; logging offline into the run folder instead "
          f"(upload later with `wandb sync <run_dir>/wandb/offline-run-*`; set logger.mode=offline or "
          f"WANDB_MODE=offline to skip this check)", file=sys.stderr, flush=True)


def _finish_quietly(wandb) -> None:
    try:
        if wandb.run is not None:
            wandb.finish(exit_code=1, quiet=True)
    except Exception:  # noqa: BLE001 - a half-started online run is dropped; the offline one replaces it
        pass
