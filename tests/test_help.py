"""`python -m r1exp --help`: r1exp's own help (conf/hydra/help/r1exp.yaml through Hydra's help template), not
Hydra's "__main__ is powered by Hydra" and the whole config; `--hydra-help` stays Hydra's. The entry point's
pre-flight lets both through without composing, checking or starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, run_cli

COMMANDS = ["python -m r1exp ", "dry_run=true", "experiment=", "python -m r1exp -m ",
            "python -m r1exp.reproduce RUN_DIR", "python -m r1exp.runs", "python -m r1exp.runs compare RUN_A RUN_B"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def help_text(tmp_path_factory) -> str:
    result = run_cli(["--help"], tmp_path_factory.mktemp("help") / "run", timeout=120)
    assert result.code == 0, result.output
    return result.stdout


def test_help_says_what_r1exp_is_and_shows_the_everyday_commands(help_text):
    assert help_text.startswith("r1exp: GRPO")
    assert "powered by Hydra" not in help_text and "__main__" not in help_text
    for command in COMMANDS:
        assert command in help_text, command


def test_help_lists_every_config_group_with_its_options_and_not_the_config(help_text):
    lines = help_text.splitlines()
    for group in ("model", "engine", "loader", "data", "reward", "trainer", "logger", "distributed", "experiment"):
        assert f"{group}: {', '.join(options(group))}" in lines, group
    assert "name_or_path:" not in help_text and "== Config ==" not in help_text   # Hydra's default dumps it all
    assert not any(line.startswith(("hydra/", "launcher:")) for line in lines)


def test_help_names_the_console_switch_and_where_to_read_more(help_text):
    assert "R1EXP_LIVE=verbose" in help_text and "train.log" in help_text
    assert "README.md" in help_text and "docs/" in help_text and "--hydra-help" in help_text


@pytest.mark.parametrize("args", [["-h"], ["dry_run=true", "--help"],
                                  ["-m", "trainer.learning_rate=1e-3,2e-3", "--help"],   # before: Hydra's traceback
                                  ["model=qwen7", "--help"]])                              # a typo: the same
def test_help_wins_over_a_run_a_dry_run_or_a_sweep(args, tmp_path, help_text):
    result = run_cli(args, tmp_path / "run", timeout=120, cwd=tmp_path)
    assert result.code == 0, result.output
    assert result.stdout == help_text   # no dry-run plan, no check report, no job
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()  # nothing was started


def test_hydra_help_is_still_hydras(tmp_path):
    result = run_cli(["--hydra-help"], tmp_path / "run", timeout=120, cwd=tmp_path)
    assert result.code == 0, result.output
    assert "Hydra (" in result.stdout and "== Flags ==" in result.stdout and "hydra/help: " in result.stdout
    assert not (tmp_path / "run").exists()


def test_the_help_template_has_no_stray_dollar_sign():
    """Hydra fills the template with string.Template: a lone `$` other than its four names stops --help."""
    import re

    import yaml

    template = yaml.safe_load((ROOT / "conf" / "hydra" / "help" / "r1exp.yaml").read_text())["template"]
    names = set(re.findall(r"\$(\w+)", template.replace("$$", "")))
    assert names <= {"APP_CONFIG_GROUPS", "HYDRA_CONFIG_GROUPS", "FLAGS_HELP", "CONFIG"}
    assert "$CONFIG" not in template.replace("$CONFIG_", "")   # the whole config is --cfg job's job
    assert Path(ROOT / "conf" / "config.yaml").read_text().count("override hydra/help: r1exp") == 1


@pytest.mark.parametrize("argv, expected", [
    (["--help"], ["--help"]),
    (["-m", "a=1,2", "-h", "b=3"], ["--help"]),
    (["-cd", "sweeps", "-cn", "lr_beta", "--help"], ["--help", "-cd", "sweeps", "-cn", "lr_beta"]),
    (["--config-dir=sweeps", "--hydra-help", "x=1"], ["--hydra-help", "--config-dir=sweeps"]),
])
def test_help_hands_hydra_the_flag_and_the_config_choice_only(argv, expected):
    from r1exp.__main__ import help_argv

    assert help_argv(argv) == expected


def test_help_into_a_closed_pipe_is_quiet(tmp_path):
    """`python -m r1exp --help | head -3`: no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "r1exp", "--help"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and "Traceback" not in err, err
