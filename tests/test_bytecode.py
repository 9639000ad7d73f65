"""machine.bytecode: a warning when every run would compile the heavy packages from source (r1exp/machine/bytecode.py)."""

from __future__ import annotations

import importlib
import py_compile
import sys
from types import SimpleNamespace

import pytest

from r1exp.machine import bytecode


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `fakepkg` on sys.path, without bytecode."""
    (tmp_path / "fakepkg").mkdir()
    init = tmp_path / "fakepkg" / "__init__.py"
    init.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "pycache_prefix", None)
    importlib.invalidate_caches()
    return init


@pytest.mark.parametrize("compiled, dont_write, writable, every_run", [
    (True, True, False, False),    # bytecode there: read even with PYTHONDONTWRITEBYTECODE
    (False, False, True, False),   # the first import writes it
    (False, True, True, True),     # PYTHONDONTWRITEBYTECODE and none there
    (False, False, False, True),   # read-only folder and none there
])
def test_a_package_is_compiled_every_run_only_without_bytecode_and_without_a_way_to_write_it(
        package, monkeypatch, compiled, dont_write, writable, every_run):
    if compiled:
        py_compile.compile(str(package), cfile=importlib.util.cache_from_source(str(package)))
    monkeypatch.setattr(sys, "dont_write_bytecode", dont_write)
    monkeypatch.setattr(bytecode, "_writable", lambda folder: writable)
    assert bytecode.compiled_every_run("fakepkg") is every_run


def test_pycache_prefix_is_where_python_looks(package, tmp_path, monkeypatch):
    prefix = tmp_path / "prefix"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert bytecode.compiled_every_run("fakepkg")
    py_compile.compile(str(package), cfile=importlib.util.cache_from_source(str(package)))
    assert str(prefix) in importlib.util.cache_from_source(str(package))
    assert not bytecode.compiled_every_run("fakepkg")


@pytest.mark.parametrize("name", ["not_installed_anywhere", "sys", "os.path"])
def test_absent_builtin_and_dotted_names_are_not_flagged(name):
    assert not bytecode.compiled_every_run(name)


def test_the_warning_names_the_packages_and_the_fix(package, monkeypatch):
    monkeypatch.setattr(bytecode, "HEAVY", ("fakepkg", "sys"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    ctx = SimpleNamespace(env=SimpleNamespace(versions={}))
    (problem,) = bytecode.check(ctx)
    assert problem.severity == "warning" and problem.value == "fakepkg"
    assert "PYTHONDONTWRITEBYTECODE" in problem.why
    assert f"compileall -q -j 0 {package.parent.parent}" in problem.fix      # the folder holding the package
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert list(bytecode.check(ctx)) == []          # tmp_path is writable: the first run writes the bytecode


def test_the_rule_is_in_the_table():
    from r1exp.checks.generic import RULES

    assert any(rule.id == "machine.bytecode" and rule.scope == "machine" for rule in RULES)
