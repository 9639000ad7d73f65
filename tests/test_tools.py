"""Tools and environments as config (`tools=[calculator]`, `environment=answer_checker`), as a specification.

- the shipped tools compute what they say and refuse what they must (the calculator without `eval`, the Python
  tool in a limited interpreter);
- a tool's YAML binds its settings and time limit, and TRL still sees the function's own name, arguments and
  docstring (transformers' `get_json_schema`, as TRL calls it);
- every way a tool or environment is unusable by TRL stops the dry run before anything loads, naming the key;
  tools that work are not flagged (a false alarm is as bad as a miss);
- what the rows read from the installed TRL's source agrees with TRL itself.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import r1exp.__main__ as entry
from r1exp.checks.validate import validate
from r1exp.config.compose import compose
from r1exp.machine.facts import detect
from r1exp.tools import build_environment, build_tools
from r1exp.tools.binding import ToolTimeout, bind
from r1exp.tools.calculator import CalculatorError, calculator
from r1exp.tools.python import python
from r1exp.tools.template import find_template, missing_parts
from r1exp.tools.trl_support import trl_tools
from r1exp.tools.turns import turns

TRL_TEMPLATES = Path(inspect.getfile(__import__("trl"))).parent / "chat_templates"
QWEN = f"model.chat_template={TRL_TEMPLATES / 'qwen2_5.jinja'}"
ROOMY = ["model.arch.max_position=4096", "model.max_seq_length=2048", "trainer.max_completion_length=256"]
TOOL = "components.sample_tools"


# -- the shipped tools

@pytest.mark.parametrize("expression,value", [
    ("4821 + 377", "5198"), ("(2 + 3) * 4", "20"), ("7 / 2", "3.5"), ("8 / 2", "4"), ("-3 ** 2", "-9"),
    ("17 // 5", "3"), ("17 % 5", "2"), ("2 ** 10", "1024"), (" 12 ", "12"),
])
def test_the_calculator_computes_exactly(expression, value):
    assert calculator(expression) == value


@pytest.mark.parametrize("expression,why", [
    ("__import__('os').system('true')", "only numbers"), ("x + 1", "only numbers"), ("1 / 0", "division by zero"),
    ("9 ** 9 ** 9", "exponent"), ("(", "not an arithmetic expression"), ("1" * 600, "longer than"),
    ("open('/etc/passwd')", "only numbers"), ("True + 1", "only numbers"), ("10 ** 64 * 10 ** 64", "digits"),
])
def test_the_calculator_refuses_what_is_not_arithmetic(expression, why):
    with pytest.raises(CalculatorError, match=why):
        calculator(expression)


@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=6), st.lists(st.sampled_from("+-*"), min_size=5,
                                                                              max_size=5))
@settings(max_examples=200, deadline=None)
def test_the_calculator_agrees_with_python_on_integer_arithmetic(numbers, ops):
    expression = " ".join(f"{op} ({n})" if i else f"({n})" for i, (n, op) in enumerate(zip(numbers, ["", *ops])))
    assert calculator(expression) == str(eval(expression))


def test_the_python_tool_runs_code_in_a_limited_interpreter():
    assert python("print(sum(range(101)))") == "5050\n"
    assert python("import sys; sys.exit(3)").endswith("error: exit status 3")
    assert python("1 / 0").endswith("ZeroDivisionError: division by zero")
    assert "MemoryError" in python("x = bytearray(2 * 10**9)", memory_mb=256)
    assert python("print('x' * 5000)", max_output_chars=100).endswith("...(cut)")
    assert python("import os; print(sorted(os.environ))") == "['LC_CTYPE', 'PATH']\n" or "HOME" not in python(
        "import os; print(sorted(os.environ))")   # an empty environment (the interpreter may add LC_CTYPE)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="longer than 1 s"):
        python("while True: pass", time_limit_s=1)
    assert time.monotonic() - start < 5


# -- binding: the YAML's settings and time limit, TRL's view unchanged

def test_a_bound_tool_shows_trl_only_the_arguments_the_model_fills():
    from components.sample_tools import lookup
    from transformers.utils.chat_template_utils import get_json_schema

    tool = bind(lookup, {"suffix": "?"}, time_limit_s=2)
    schema = get_json_schema(tool)["function"]
    assert schema["name"] == "lookup" and schema["description"] == "Look a word up."
    assert list(schema["parameters"]["properties"]) == ["word"]
    assert tool(word="hi") == "HI?"


def test_a_tool_past_its_time_limit_raises_so_trl_counts_a_failure():
    from components.sample_tools import hangs

    start = time.monotonic()
    with pytest.raises(ToolTimeout, match="longer than 0.3 s"):
        bind(hangs, {}, 0.3)(word="x")
    assert time.monotonic() - start < 2


def test_a_tool_with_its_own_time_limit_enforces_it_and_hides_it_from_the_model():
    tool = bind(python, {"memory_mb": 128, "max_output_chars": 100}, 1.5)
    assert list(inspect.signature(tool).parameters) == ["code"]
    with pytest.raises(TimeoutError):
        tool(code="while True: pass")


def test_the_build_hands_trl_the_configured_tools_and_environment():
    cfg = compose(["tools=[calculator,python]", "environment=answer_checker"])
    tools = build_tools(cfg.tools)
    assert [t.__name__ for t in tools] == ["calculator", "python"]
    assert tools[0](expression="2 + 2") == "4"
    env = build_environment(cfg.environment)()
    assert env.max_checks == 3 and env.reset(answer="42").startswith("You may check")
    assert [env.check_answer("41"), env.check_answer("43"), env.check_answer("42")] == ["too small", "too large",
                                                                                        "right"]
    with pytest.raises(RuntimeError, match="no checks left"):
        env.check_answer("42")
    assert build_tools(compose([]).get("tools")) == [] and build_environment(compose([]).get("environment")) is None


def test_turns_count_the_assistant_turns_of_a_completion():
    call = {"role": "assistant", "content": "", "tool_calls": [{}]}
    assert turns([call, {"role": "tool", "content": "4"}, {"role": "assistant", "content": "4"}]) == 2
    assert turns([{"role": "assistant", "content": "4"}]) == 1 and turns("4") == 1


# -- the pre-flight

def problems(overrides):
    cfg = compose(overrides + ["dry_run=true", "logger=none"])
    return validate(cfg, detect(), dry_run=True)


def rule_problems(overrides, rule):
    return [p for p in problems(overrides) if p.rule == rule]


# (overrides, rule, key, words in the message): each stops the dry run before anything loads
BAD_TOOLS = [
    ([f"+tools.t._target_={TOOL}.missing"], "tools.target", "tools.t._target_", "has no attribute 'missing'"),
    (["+tools.t._target_=no_such_package.tool"], "tools.target", "tools.t._target_", "importing no_such_package"),
    ([f"+tools.t._target_={TOOL}.no_docstring"], "tools.target", "tools.t._target_", "docstring"),
    ([f"+tools.t._target_={TOOL}.unannotated"], "tools.target", "tools.t._target_", "type hint"),
    ([f"+tools.t._target_={TOOL}.undocumented_argument"], "tools.target", "tools.t._target_", "count"),
    ([f"+tools.t._target_={TOOL}.Counter"], "tools.target", "tools.t._target_", "not a function"),
    ([f"+tools.t._target_={TOOL}.lookup", "+tools.t.colour=red"], "tools.target", "tools.t.colour",
     "no parameter 'colour'"),
    (["tools=[calculator]", "+tools.again._target_=r1exp.tools.calculator.calculator"], "tools.target",
     "tools.again._target_", "two tools are named 'calculator'"),
    (["tools=[calculator]", "tools.calculator.time_limit_s=-1"], "tools.target", "tools.calculator.time_limit_s",
     "positive"),
    (["tools=[calculator]"], "tools.chat_template", "model.chat_template", "leaves out the tool call"),
    (["tools=[calculator]", f"model.chat_template={TRL_TEMPLATES / 'cohere2.jinja'}", *ROOMY],
     "tools.chat_template", "model.chat_template", "leaves out"),
    (["tools=[calculator]", f"model.chat_template={TRL_TEMPLATES / 'phi3.jinja'}", *ROOMY],
     "tools.chat_template", "model.chat_template", ""),
    (["tools=[calculator]", QWEN, "model.arch.max_position=4096", "model.max_seq_length=2048",
      "trainer.max_completion_length=40"], "tools.fit", "trainer.max_completion_length", "does not fit"),
    ([f"+tools.t._target_={TOOL}.raises", "+tools.t.probe={word: x}", QWEN, *ROOMY], "tools.probe", "tools.t",
     "the backend is down"),
    ([f"+tools.t._target_={TOOL}.hangs", "+tools.t.time_limit_s=0.5", "+tools.t.probe={word: x}", QWEN, *ROOMY],
     "tools.probe", "tools.t", "did not answer"),
    ([f"environment._target_={TOOL}.NoReset"], "tools.environment", "environment._target_", "no `reset`"),
    ([f"environment._target_={TOOL}.UndocumentedMethod"], "tools.environment", "environment._target_",
     "method add"),
    ([f"environment._target_={TOOL}.Counter", "+environment.colour=red"], "tools.environment", "environment.colour",
     "no argument 'colour'"),
    (["environment._target_=no_such.Env"], "tools.environment", "environment._target_", "cannot import"),
]


@pytest.mark.parametrize("overrides,rule,key,words", BAD_TOOLS, ids=[f"{r[1]}: {' '.join(r[0])[:60]}"
                                                                     for r in BAD_TOOLS])
def test_an_unusable_tool_is_an_error_naming_its_key(overrides, rule, key, words):
    found = rule_problems(overrides, rule)
    assert found, [p.render() for p in problems(overrides)]
    p = found[0]
    assert p.severity == "error" and p.key == key, p.render()
    assert words in p.why, p.render()
    assert p.fix


# tools that work in TRL pass: no problem at all from the tool rows (and none from the lengths they add)
GOOD_TOOLS = [
    ["tools=[calculator]", QWEN, *ROOMY],
    ["tools=[calculator,python]", QWEN, *ROOMY],
    ["tools=[calculator,python]", "tools.python.time_limit_s=null", QWEN, *ROOMY],   # its own default limit, hidden
    [f"+tools.t._target_={TOOL}.lookup", "+tools.t.suffix=?", QWEN, *ROOMY],
    [f"+tools.t._target_={TOOL}.lookup", "+tools.t.probe={word: x}", f"model.chat_template={TRL_TEMPLATES}/"
     "llama3_1.jinja", *ROOMY],
    ["environment=answer_checker", QWEN, *ROOMY],
    [f"environment._target_={TOOL}.Counter", "+environment.start=3", f"model.chat_template={TRL_TEMPLATES}/"
     "qwen3.jinja", *ROOMY],
]


@pytest.mark.parametrize("overrides", GOOD_TOOLS, ids=[" ".join(o[:2])[:70] for o in GOOD_TOOLS])
def test_tools_that_work_in_trl_pass(overrides):
    found = [p for p in problems(overrides) if p.rule.startswith("tools.") or p.severity == "error"]
    assert not found, [p.render() for p in found]


def test_the_cli_stops_a_tool_without_a_docstring_with_exit_2_and_no_run_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(entry, "_hydra", lambda argv, cl: 99)   # should the check let it through: fail at once
    code = entry.main(["logger=none", f"+tools.t._target_={TOOL}.no_docstring", f"hydra.run.dir={tmp_path / 'run'}"])
    text = "".join(capsys.readouterr())
    assert code == 2 and "error [tools.target]: tools.t._target_ = " in text and "docstring" in text
    assert "Traceback" not in text and not (tmp_path / "run").exists()


def test_the_dry_run_names_the_template_and_the_parser_trl_will_use(capsys):
    code = entry.main(["logger=none", "dry_run=true", "tools=[calculator]", QWEN, *ROOMY])
    text = " ".join(capsys.readouterr().out.split())
    assert code == 0, text
    assert "tools" in text and "calculator (r1exp.tools.calculator.calculator, 2 s a call)" in text
    assert "TRL's qwen2_5 parser" in text.replace("│ ", "").replace(" │", "")


def test_the_tools_descriptions_count_in_the_prompt_length():
    from r1exp.data.prompts import prompt_estimate

    plain = prompt_estimate(compose([QWEN, *ROOMY])).tokens
    with_tools = prompt_estimate(compose(["tools=[calculator,python]", QWEN, *ROOMY])).tokens
    assert with_tools > plain + 100   # two JSON schemas and the template's tool instructions


# -- what the rows read from TRL, against TRL itself

def test_trls_tool_support_read_from_its_source_matches_trl():
    from trl import GRPOTrainer
    from trl.chat_template_utils import add_response_schema  # noqa: F401 - imported: the parser exists

    support = trl_tools()
    accepted = set(inspect.signature(GRPOTrainer.__init__).parameters)
    assert support.accepts == {"tools", "environment_factory"} & accepted
    assert support.needs["tools"] and support.needs["environment_factory"]
    import trl.chat_template_utils as ctu

    for name, text in support.parsed_templates.items():
        assert getattr(ctu, f"{name}_chat_template") == text


@pytest.mark.parametrize("template", sorted(p.name for p in TRL_TEMPLATES.glob("*.jinja")))
def test_the_template_check_agrees_with_trls_supports_tool_calling(template):
    """Over every template TRL ships: r1exp's check renders what TRL's does (no tokenizer needed for r1exp's)."""
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import supports_tool_calling

    text = (TRL_TEMPLATES / template).read_text()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_byte_tokenizer(), chat_template=text)
    try:
        trl_says = supports_tool_calling(tokenizer)
    except Exception:  # noqa: BLE001 - a template TRL's check itself cannot render (needs a processor)
        pytest.skip("TRL's own check does not run on a text tokenizer for this template")
    ours = missing_parts(text)
    assert (ours == []) == trl_says, ours


def _byte_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    return tok


def test_the_template_is_found_in_a_model_folder(tmp_path):
    import json

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": [
        {"name": "default", "template": "{{ messages }}"}, {"name": "tool_use", "template": "TOOLS {{ tools }}"}]}))
    cfg = compose([f"model.name_or_path={folder}"])
    found = find_template(cfg)
    assert found.text == "TOOLS {{ tools }}" and found.where.endswith("tokenizer_config.json")
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    assert find_template(cfg).text == "{{ messages }}"


def test_an_environment_run_says_held_out_evaluation_is_skipped_and_tools_alone_are_evaluated():
    from r1exp.evaluation import heldout

    with_env = compose(["environment=answer_checker", QWEN, *ROOMY])
    warned = [p for p in problems(["environment=answer_checker", QWEN, *ROOMY]) if p.rule == "eval.environment"]
    assert warned and warned[0].severity == "warning" and not heldout.runs(with_env)
    assert heldout.runs(compose(["tools=[calculator]", QWEN, *ROOMY]))
    assert not rule_problems(["tools=[calculator]", QWEN, *ROOMY], "eval.environment")


# -- the completions table of a tool run (r1exp/patches/trl_completions_table.py)

def test_a_tool_runs_messages_get_one_shape_for_the_completions_table():
    import pandas as pd

    from r1exp.patches.trl_completions_table import uniform_messages

    call = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
        "name": "calculator", "arguments": {"expression": "1 + 2"}}}]}
    buffers = {"prompt": [[{"role": "user", "content": "Q"}]] * 2, "completion": [
        [{"role": "assistant", "content": "3", "reasoning_content": None}],
        [call, {"role": "tool", "name": "calculator", "content": "3"}, {"role": "assistant", "content": "3"}]]}
    assert uniform_messages(buffers)
    messages = [m for row in buffers["completion"] for m in row]
    assert {tuple(m) for m in messages} == {("role", "content", "name", "reasoning_content", "tool_calls")}
    assert all(isinstance(v, str) for m in messages for v in m.values())
    assert '"expression": "1 + 2"' in buffers["completion"][1][0]["tool_calls"]
    assert buffers["prompt"] == [[{"role": "user", "content": "Q"}]] * 2   # already one shape: left as it was
    assert not uniform_messages(buffers)                                    # and now all of it is
    pd.DataFrame(buffers).to_parquet(io_bytes := __import__("io").BytesIO())   # what TRL writes first
    assert io_bytes.getvalue()


def test_the_committed_gpu_tool_runs_say_what_docs_claim():
    """bench/results/gpu/tools/runs.json (docs/benchmarks.md, docs/tools.md): the demo learned on an H100 with
    in-process vLLM and W&B, and the 0.5B runs with tools (peft and Unsloth) completed beside one without."""
    import json

    runs = json.loads((Path(__file__).resolve().parents[1] / "bench/results/gpu/tools/runs.json").read_text())["runs"]
    assert all(r["status"] == "ok" for r in runs.values())
    demo = runs["tool_use_demo"]["steps"]
    tenth = max(1, len(demo["tools/call_frequency"]) // 10)
    first = lambda k: sum(demo[k][:tenth]) / tenth
    last = lambda k: sum(demo[k][-tenth:]) / tenth
    assert last("tools/call_frequency") > first("tools/call_frequency") + 0.2
    assert last("rewards/accuracy/mean") >= first("rewards/accuracy/mean") + 0.3
    assert runs["tool_use_demo"]["eval"][-1]["eval/pass@1"] == 1.0
    assert "tools/call_frequency" in runs["tools_0.5b"]["steps"] and "tools/call_frequency" in runs[
        "tools_0.5b_unsloth"]["steps"] and not runs["no_tools_0.5b"]["steps"]["tools/call_frequency"]


def test_an_environments_methods_and_reset_text_count_in_the_prompt_length():
    """TRL renders the environment's methods as tools and appends reset()'s text to the question: a run planned
    without them gave vLLM a context of 192 tokens for a 380-token prompt."""
    from r1exp.data.prompts import prompt_estimate

    plain = prompt_estimate(compose(["experiment=tool_use"])).tokens
    with_env = prompt_estimate(compose(["experiment=tool_use", "environment=answer_checker"])).tokens
    assert with_env > plain + 50


@pytest.mark.slow
def test_an_environment_run_trains_with_its_methods_as_tools(tmp_path):
    """A real run with environment=answer_checker (TRL's environment_factory): it trains and the environment's reward
    is logged beside the run's."""
    import json

    from conftest import run_cli

    result = run_cli(["experiment=tool_use", "environment=answer_checker", "trainer.max_steps=2", "logger=none",
                      "eval=none"], tmp_path / "run")
    assert result.code == 0, result.output[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/AnswerChecker/mean" in r for r in rows)
