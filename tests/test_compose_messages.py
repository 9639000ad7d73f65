"""Composition errors say what the user must change: quote a non-ASCII value, name an option (not a path)."""

from __future__ import annotations

import contextlib
import io

import pytest

import r1exp.__main__ as entry


def dry_run(*overrides) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = entry.main([*overrides, "dry_run=true"])
    return code, out.getvalue()


@pytest.mark.parametrize("override,says", [
    ("name=é", ["does not accept 'é' in an unquoted value", "quote the value: name='é'"]),
    ("data.system_prompt=Réponds", ["quote the value: data.system_prompt='Réponds'"]),
    ("model=../config", ["'../config' is not a valid option name", "options: llama3_8b"]),
    ("reward=[accuracy,formt]", ["no option 'formt'", "did you mean reward=format"]),
    ("~model", ["the model group cannot be deleted", "model=<option> (llama3_8b"]),   # the preset follows it
])
def test_messages(override, says):
    code, output = dry_run(override)
    assert code == 2 and "Traceback" not in output and "fix: ^" not in output
    for text in says:
        assert text in output, output


def test_a_quoted_unicode_value_is_accepted():
    code, output = dry_run("name='é'", "logger=none")
    assert code == 0, output
