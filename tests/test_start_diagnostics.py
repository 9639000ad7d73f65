"""The two bench tools that say where a start goes (the H200 start-up results rest on them: bench/results/gpu/startup).

bench/page_cache.py: how much of a library file is in the page cache (mincore), and dropping it from there
(posix_fadvise), for real on a file of this machine. bench/sample_stacks.py: a module run under the sampler leaves
one line per sample of its main thread, and the summary puts the seconds where the frames were.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, bench_module

page_cache = bench_module("page_cache")
sample_stacks = bench_module("sample_stacks")


def test_a_library_read_is_resident_and_an_evicted_one_is_not(tmp_path):
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this system")
    library = tmp_path / "libexample.so.1"
    with library.open("wb") as f:
        f.write(b"x" * (4 << 20))
        f.flush()
        os.fsync(f.fileno())                          # written back: clean pages can be dropped
    assert page_cache.libraries([str(tmp_path)]) == [library]
    (tmp_path / "libtiny.so").write_bytes(b"x")                   # under 1 MiB: not counted
    assert page_cache.libraries([str(tmp_path)]) == [library]
    library.read_bytes()
    libc = page_cache._libc()
    assert page_cache.resident_bytes(library, libc) >= 4 << 20
    page_cache.evict(library)
    assert page_cache.resident_bytes(library, libc) < 1 << 20
    report = page_cache.residency([library])
    assert report["files"] == 1 and report["libraries"][0]["mib"] == 4.0


def test_the_sampler_puts_a_modules_seconds_where_its_main_thread_was(tmp_path):
    package = tmp_path / "slowpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import time\n\ndef wait_for_disk():\n    time.sleep(1.2)\n\ndef compute():\n    t = time.perf_counter()\n"
        "    while time.perf_counter() - t < 0.6:\n        pass\n\nwait_for_disk()\ncompute()\n")
    out = tmp_path / "stacks.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "sample_stacks.py"), "--out", str(out), "--every",
                           "0.05", "--", "-m", "slowpkg"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = sample_stacks.samples(out.read_text())
    seconds = {}
    for weight, frames in rows:
        name = next((f for _, _, f in frames if f in ("wait_for_disk", "compute")), None)
        seconds[name] = seconds.get(name, 0.0) + weight
    assert seconds["wait_for_disk"] == pytest.approx(1.2, abs=0.25)
    assert seconds["compute"] == pytest.approx(0.6, abs=0.25)
    summary = sample_stacks.summarize(out, top=5)
    assert "wait_for_disk" in summary and "samples of the main thread" in summary
