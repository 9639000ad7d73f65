"""How much of the native libraries of the installed packages is in the page cache, and dropping them from it.

    python bench/page_cache.py [--out residency.json]     # per library: MiB, MiB resident (mincore), largest first
    python bench/page_cache.py --evict [--out ...]         # drop them from the page cache first (posix_fadvise
                                                           # DONTNEED: no root needed; pages a running process maps stay)

The libraries: every shared library (`*.so`, `*.so.N`) of 1 MiB or more under the Python path's site-packages
folders (the staged packages and the image's). A machine that has just started has most of them on disk only;
after a run, the pages the run read are resident. `--evict` brings a machine that has run back to a cold page
cache for those files, without touching the kernel caches or the bytecode.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import mmap
import os
import re
import sys
import time
from pathlib import Path

LIBRARY = re.compile(r"\.so(\.\d+)*$")
MIN_BYTES = 1 << 20
PAGE = mmap.PAGESIZE


def libraries(roots: list[str] | None = None) -> list[Path]:
    roots = roots or [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) or p == "/tmp/site"]
    found: dict[str, Path] = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if LIBRARY.search(name) and not path.is_symlink():
                    try:
                        if path.stat().st_size >= MIN_BYTES:
                            found.setdefault(str(path.resolve()), path)
                    except OSError:
                        pass
    return sorted(found.values(), key=lambda p: -p.stat().st_size)


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc


def resident_bytes(path: Path, libc) -> int | None:
    """Bytes of the file in the page cache (mincore over a mapping of it), None where it cannot be asked."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + PAGE - 1) // PAGE
            vector = (ctypes.c_ubyte * pages)()
            if libc.mincore(address, size, vector) != 0:
                return None
            return sum(v & 1 for v in vector) * PAGE
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def residency(paths: list[Path]) -> dict:
    libc = _libc()
    rows, total, resident = [], 0, 0
    for path in paths:
        size, held = path.stat().st_size, resident_bytes(path, libc)
        total += size
        resident += held or 0
        rows.append({"path": str(path), "mib": round(size / 2**20, 1),
                     "resident_mib": None if held is None else round(held / 2**20, 1)})
    return {"files": len(rows), "gib": round(total / 2**30, 2), "resident_gib": round(resident / 2**30, 2),
            "libraries": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evict", action="store_true")
    parser.add_argument("--root", action="append", default=None, help="folders to look in (default: site-packages)")
    parser.add_argument("--out", default=None)
    a = parser.parse_args(argv)
    paths = libraries(a.root)
    result: dict = {}
    if a.evict:
        t = time.perf_counter()
        result["before"] = {k: v for k, v in residency(paths).items() if k != "libraries"}
        for path in paths:
            evict(path)
        result["evict_s"] = round(time.perf_counter() - t, 2)
    result.update(residency(paths))
    print(f"{result['files']} libraries, {result['gib']} GiB, {result['resident_gib']} GiB resident"
          + (f" (before eviction {result['before']['resident_gib']})" if a.evict else ""))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
