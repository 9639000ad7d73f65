"""The model and the data are there before anything heavy: a local folder holds what loading and prompting need,
a hub id is in the local Hugging Face cache when the hub is offline, and is known to the hub (and not gated
without a token) when online. Each problem stops the run with exit 2 and the fix, in well under 2 s.

Folders and caches are built here (an empty HF_HOME per test, huggingface_hub's cache layout); the online cases
ask a local HTTP server that answers as the hub's API does (huggingface_hub's own client talks to it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import MODEL_FILES, ROOT, put_in_hub_cache
from r1exp.config.compose import compose
from r1exp.checks.validate import validate
from r1exp.machine.facts import detect

HERE = detect()
COMPLETE = {**MODEL_FILES}
INDEX = json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})


def without(*names, **extra):
    return {**{k: v for k, v in COMPLETE.items() if k not in names}, **extra}


def folder_with(root: Path, files: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def source_problems(overrides: list[str], dry_run: bool = True) -> list:
    found = validate(compose(["logger=none", *overrides]), HERE, dry_run=dry_run)
    return [p for p in found if p.rule in ("model.source", "model.random_init_path", "data.hub", "data.path")]


# ---- a local folder: (files in it, what the message must say; None = no problem)
LOCAL = [
    ("complete", COMPLETE, None),
    ("chat template as chat_template.jinja", without("tokenizer_config.json", **{"chat_template.jinja": "{{ x }}"}),
     None),
    ("sharded, every shard there", without("model.safetensors", **{"model.safetensors.index.json": INDEX,
                                                                   "model-00001-of-00002.safetensors": "",
                                                                   "model-00002-of-00002.safetensors": ""}), None),
    ("pytorch .bin weights", without("model.safetensors", **{"pytorch_model.bin": ""}), None),
    ("no config.json", without("config.json"), "config.json"),
    ("no tokenizer", without("tokenizer.json"), "tokenizer files"),
    ("no weights", without("model.safetensors"), "the weights"),
    ("a shard missing", without("model.safetensors", **{"model.safetensors.index.json": INDEX,
                                                         "model-00001-of-00002.safetensors": ""}),
     "1 of the 2 weight shards"),
    ("no chat template", without("tokenizer_config.json", **{"tokenizer_config.json": "{}"}), "chat template"),
]


@pytest.mark.parametrize("case,files,says", LOCAL, ids=[c[0] for c in LOCAL])
def test_a_local_model_folder(case, files, says, tmp_path, hf_home):
    folder = folder_with(tmp_path / "model", files)
    found = source_problems(["model=qwen0_5b", f"model.name_or_path={folder}"])
    if says is None:
        assert found == []
    else:
        [p] = found
        assert p.rule == "model.source" and p.severity == "error" and says in p.why, p


def test_a_deleted_folder_a_file_and_a_typo_are_named_as_such(tmp_path, hf_home):
    gone = folder_with(tmp_path / "gone", COMPLETE)
    shutil.rmtree(gone)
    a_file = tmp_path / "weights.safetensors"
    a_file.write_text("")
    for path, says in ((gone, "no such folder"), (a_file, "a file, not a model folder"),
                       ("'~/no/such/model'", "no such folder")):
        [p] = source_problems(["model=qwen0_5b", f"model.name_or_path={path}"])
        assert says in p.why and "model.name_or_path" in p.fix


# ---- a hub id: (what is in the cache, offline?, what the message must say)
HUB = [
    ("cached and complete", COMPLETE, None),
    ("not cached", None, "the hub is offline (HF_HUB_OFFLINE=1) and the model is not in the local Hugging Face cache"),
    ("cached without weights", without("model.safetensors"), "lacks the weights"),
    ("cached without a chat template", without("tokenizer_config.json", **{"tokenizer_config.json": "{}"}),
     "no chat template"),
]


@pytest.mark.parametrize("case,cached,says", HUB, ids=[c[0] for c in HUB])
def test_a_hub_id_offline(case, cached, says, hf_home):
    if cached is not None:
        put_in_hub_cache(hf_home, "Qwen/Qwen2.5-0.5B-Instruct", files=cached)
    start = time.perf_counter()
    found = source_problems(["model=qwen0_5b"])
    assert time.perf_counter() - start < 2.0
    if says is None:
        assert found == []
        return
    [p] = found
    assert says in p.why, p.why
    if cached is None:
        assert str(hf_home / "hub") in p.why
        assert "`hf download Qwen/Qwen2.5-0.5B-Instruct`" in p.fix and "model.init=random" in p.fix
        assert "model.name_or_path=/path" in p.fix


def test_random_weights_need_no_download_but_a_path_would_be_ignored(tmp_path, hf_home):
    assert source_problems(["model=qwen7b", "model.init=random"]) == []   # built here from model.arch
    assert source_problems([]) == []                                      # the tiny demo
    folder = folder_with(tmp_path / "mine", COMPLETE)
    [p] = source_problems(["model=tiny", f"model.name_or_path={folder}"])   # a random-init preset with a folder
    assert p.rule == "model.random_init_path" and "model.init=pretrained" in p.fix


def test_a_hub_dataset_offline(hf_home, tmp_path):
    [p] = source_problems(["data=gsm8k"])
    assert p.rule == "data.hub" and "offline" in p.why and "hf download openai/gsm8k --repo-type dataset" in p.fix
    prepared = hf_home / "datasets" / "openai___gsm8k" / "main" / "0.0.0" / "abc123"
    prepared.mkdir(parents=True)
    assert source_problems(["data=gsm8k"]) == []                        # datasets' prepared copy
    shutil.rmtree(hf_home / "datasets")
    put_in_hub_cache(hf_home, "openai/gsm8k", kind="dataset", files={"README.md": "gsm8k"})
    assert source_problems(["data=gsm8k"]) == []                        # the repository in the hub cache


# ---- the issue's cases, through the real CLI: exit 2 with the fix, no traceback, no run folder

def test_the_issues_cases_stop_the_cli_with_the_fix(cli, tmp_path, hf_home):
    deleted = folder_with(tmp_path / "deleted_model", COMPLETE)
    shutil.rmtree(deleted)
    cases = [
        (["model=qwen0_5b", "engine=hf"], "hf download Qwen/Qwen2.5-0.5B-Instruct"),
        (["model=tiny", "model.name_or_path=/no/such/dir", "dry_run=true"], "model.init=pretrained"),
        (["model.name_or_path=/no/such/dir", "dry_run=true"], "no such folder"),   # a name alone: model=pretrained
        (["model=qwen0_5b", f"model.name_or_path={deleted}", "engine=hf"], "no such folder"),
    ]
    for args, says in cases:
        result = cli("logger=none", *args, env={"HF_HOME": str(hf_home)})
        assert result.code == 2, result.output
        assert says in result.output and "fix: " in result.output
        assert "Traceback" not in result.output and "Repo id must be" not in result.output
        assert not result.run_dir.exists()


# ---- online: huggingface_hub's API against a local server that answers as the hub does

class FakeHub(BaseHTTPRequestHandler):
    REPOS = {"models/Known/model": {"gated": False, "siblings": ["config.json", "tokenizer.json", "model.safetensors"]},
             "models/Gated/model": {"gated": "manual", "siblings": ["config.json", "tokenizer.json", "model.safetensors"]},
             "models/Gguf/model": {"gated": False, "siblings": ["model.Q4_K_M.gguf", "README.md"]},
             "datasets/Known/data": {"gated": False, "siblings": ["train.parquet"]},
             "datasets/Gated/data": {"gated": "auto", "siblings": ["train.parquet"]}}

    def do_GET(self):
        repo = self.path.split("?")[0].removeprefix("/api/")
        entry = self.REPOS.get(repo)
        if entry is None:
            code, body = 404, {"error": "Repository not found"}
        else:
            code, body = 200, {"id": repo.split("/", 1)[1], "gated": entry["gated"],
                               "siblings": [{"rfilename": f} for f in entry["siblings"]]}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if code == 404:
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ONLINE = [  # (overrides, rule that must speak or None, what it must say)
    (["model=qwen0_5b", "model.name_or_path=Known/model"], None, ""),
    (["model=qwen0_5b", "model.name_or_path=Nobody/nothing"], "model.source", "no such model on the hub"),
    (["model=qwen0_5b", "model.name_or_path=Gated/model"], "model.source", "a gated model"),
    (["model=qwen0_5b", "model.name_or_path=Gguf/model"], "model.source", "no config.json"),
    (["data=jsonl", "data.path=Known/data"], None, ""),
    (["data=jsonl", "data.path=Nobody/nothing"], "data.hub", "no such dataset on the hub"),
    (["data=jsonl", "data.path=Gated/data"], "data.hub", "a gated dataset"),
]


def test_online_the_hub_is_asked_with_huggingface_hubs_api(hf_home):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = ("import json, sys, time; from r1exp.config.compose import compose; from r1exp.checks.validate import "
              "validate; from r1exp.machine.facts import detect\nout = []\nfor args in json.loads(sys.argv[1]):\n"
              "    t = time.perf_counter(); found = validate(compose(['logger=none', *args]), detect(), dry_run=True)\n"
              "    out.append([time.perf_counter() - t, [[p.rule, p.why, p.severity] for p in found if p.rule in "
              "('model.source', 'data.hub')]])\nprint(json.dumps(out))")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                              "HF_DATASETS_OFFLINE", "HF_TOKEN")}
    env.update(PYTHONPATH=str(ROOT), HF_HOME=str(hf_home), HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
    try:
        proc = subprocess.run([sys.executable, "-c", script, json.dumps([args for args, _, _ in ONLINE])],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    finally:
        server.shutdown()
    results = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else pytest.fail(proc.stderr)
    for (args, rule, says), (seconds, found) in zip(ONLINE, results):
        if rule is None:
            assert found == [], (args, found)
        else:
            assert [(r, s) for r, _, s in found] == [(rule, "error")] and says in found[0][1], (args, found)
        assert seconds < 4.0, (args, seconds)   # huggingface_hub's import (~1 s here) + one local request


def test_no_network_is_said_at_once(hf_home, monkeypatch):
    """Online but nothing answers at the endpoint: the model is missing from the cache, said without waiting."""
    from r1exp.machine import hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")   # the discard port: connection refused
    start = time.perf_counter()
    [p] = source_problems(["model=qwen0_5b"])
    assert time.perf_counter() - start < 2.0
    assert "the hub cannot be reached (no connection to 127.0.0.1" in p.why and "hf download" in p.fix
    assert hub.offline() is None
