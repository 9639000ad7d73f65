"""Rows of the rules table about trainer.* against the installed trl.GRPOConfig: names, types, the keys r1exp sets itself, batch arithmetic with
TRL's own meaning (GRPOConfig.__post_init__), and sequence lengths."""

from __future__ import annotations


from omegaconf import OmegaConf

from r1exp.plan.memory import trainer_value
from r1exp.config.rule import Rule, get
from r1exp.machine.processes import planned_world_size
from r1exp.data.prompts import prompt_estimate
from r1exp.errors import Problem
from r1exp.grpo.args import dict_field
from r1exp.grpo.fields import grpo_fields

# GRPOConfig keys r1exp derives from other groups: setting them under trainer.* is an error naming the group.
DERIVED = {
    "output_dir": "the run folder (hydra.run.dir)",
    "run_name": "the top-level `name`",
    "report_to": "the logger group (logger=wandb|none)",
    "reward_weights": "each reward's `weight` (reward.<label>.weight)",
    "use_vllm": "the engine group (conf/engine/)",
    "vllm_mode": "the engine group (conf/engine/: each engine sets its TRL mode)",
    "vllm_gpu_memory_utilization": "engine.gpu_memory_utilization (auto = from the memory plan)",
    "vllm_tensor_parallel_size": "engine.tensor_parallel_size",
    "vllm_max_model_length": "engine.max_model_len",
    "vllm_enable_sleep_mode": "engine.sleep_mode",
    "vllm_server_host": "engine.host (a vLLM server engine)",
    "vllm_server_port": "engine.port (a vLLM server engine)",
    "vllm_server_timeout": "engine.timeout_s (a vLLM server engine)",
    "vllm_server_base_url": "engine.host and engine.port (a vLLM server engine)",
    "use_cpu": "hardware.device",
    "use_transformers_continuous_batching": "the engine group (conf/engine/)",
    "use_transformers_paged": "the engine group (conf/engine/)",
}

# Names TRL removed or renamed (its release notes): a better hint than a spelling suggestion.
RENAMED = {
    "max_prompt_length": "removed in TRL 0.28 (prompts are no longer truncated by TRL): shorten the prompts in the "
                         "data, or set data.max_prompt_tokens for the plan",
    "vllm_importance_sampling_cap": "renamed vllm_importance_sampling_clip_max in TRL 1.6 (removed in 2.0): use "
                                    "trainer.vllm_importance_sampling_clip_max",
    "vllm_device": "removed: an in-process engine runs in the trainer's process, a server engine on engine.gpus",
}


def derived_values(ctx) -> dict:
    """What r1exp passes for the derived keys it can tell before the build: the engine's TRL arguments and the
    logger's report_to (a recipe's `use_vllm: true` with engine=vllm says what r1exp does anyway)."""
    out = {"report_to": "none" if get(ctx.cfg, "logger.name") == "none" else "wandb"}
    plan = None if isinstance(ctx.planned, Exception) else ctx.planned
    if ctx.engine is not None and plan is not None:
        from r1exp.machine.facts import run_device

        try:
            out.update(ctx.engine.grpo_args(ctx.cfg, plan, run_device(ctx.cfg, ctx.env)))
        except Exception:  # noqa: BLE001 - values other rules reject; the key is then reported as derived
            pass
    return out


def _same(given, derived) -> bool:
    if isinstance(given, (list, tuple)) or OmegaConf.is_list(given):
        given = list(given)
        return given == [derived] or given == derived
    return given == derived or (isinstance(derived, float) and isinstance(given, (int, float))
                                and abs(given - derived) < 1e-9)


def trainer_keys(ctx):
    fields = grpo_fields()
    keys = [str(key) for key in (ctx.cfg.get("trainer") or {})]
    derived = derived_values(ctx) if any(key in DERIVED for key in keys) else {}   # the engine's TRL args, once
    for key in keys:
        if key in DERIVED:
            value = OmegaConf.select(ctx.cfg, f"trainer.{key}")
            agrees = key in derived and _same(value, derived[key])
            yield Problem(f"trainer.{key}", value, f"r1exp sets GRPOConfig.{key} itself from {DERIVED[key]}"
                          + (f" ({derived[key]!r} here, as you say: kept)" if agrees else
                             f" (here {derived[key]!r})" if key in derived else ""),
                          f"remove trainer.{key} and set {DERIVED[key]} instead", rule="trainer.derived_key",
                          severity="warning" if agrees else "error")
        elif key not in fields:
            why = f"not a field of trl.GRPOConfig ({fields.source})"
            if key in RENAMED:
                fix = RENAMED[key]
            else:
                close = fields.suggest(key)
                fix = (f"did you mean {' or '.join('trainer.' + c for c in close)}?" if close
                       else "see the GRPOConfig fields of the installed TRL: python -c 'import trl; help(trl.GRPOConfig)'")
            yield Problem(f"trainer.{key}", OmegaConf.select(ctx.cfg, f"trainer.{key}"), why, fix,
                          rule="trainer.unknown_key")


def trainer_types(ctx):
    fields = grpo_fields()
    trainer = ctx.cfg.get("trainer") or {}
    for key in trainer:
        key = str(key)
        spec = fields.fields.get(key)
        if spec is None or key in DERIVED:
            continue
        value = OmegaConf.select(ctx.cfg, f"trainer.{key}")
        plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if not spec.accepts(plain):
            yield Problem(f"trainer.{key}", plain, f"GRPOConfig.{key} takes {spec.type_text}",
                          f"set trainer.{key} to {spec.type_text}"
                          + (f", e.g. {spec.default!r} (TRL's default)" if spec.default not in (None, "<no default>")
                             else ""))
        elif spec.choices and isinstance(plain, str) and plain not in spec.choices:
            import difflib

            close = difflib.get_close_matches(plain, spec.choices, n=2, cutoff=0.5)
            hint = (f"did you mean {' or '.join(f'trainer.{key}={c}' for c in close)}?" if close
                    else f"did you mean one of {', '.join(spec.choices)}?")
            yield Problem(f"trainer.{key}", plain, f"the installed TRL ({fields.source}) accepts GRPOConfig.{key} = "
                          f"{', '.join(spec.choices)}", f"{hint} (TRL's default: {spec.default!r})")


def trainer_deprecated(ctx):
    """A deprecated GRPOConfig field set in the config: TRL's own deprecation message, naming its replacement."""
    fields = grpo_fields()
    for key in (ctx.cfg.get("trainer") or {}):
        spec = fields.fields.get(str(key))
        if spec is None or not spec.deprecated:
            continue
        value = OmegaConf.select(ctx.cfg, f"trainer.{key}")
        if value == spec.default:
            continue
        fix = (f"use trainer.{spec.replacement}={value} instead of trainer.{key}" if spec.replacement
               else "follow TRL's advice above and remove trainer." + str(key))
        yield Problem(f"trainer.{key}", value, f"deprecated in the installed TRL ({fields.source}): {spec.deprecated}",
                      fix, severity="warning")


def trl_values(ctx) -> dict:
    """GRPOConfig's values for this run, as TRL's checks read them: trainer.* over TRL's defaults, and what the
    engine decides (use_vllm)."""
    fields = grpo_fields()
    values = {name: f.default for name, f in fields.fields.items() if f.default != "<no default>"}
    trainer = OmegaConf.to_container(ctx.cfg.trainer, resolve=True) if OmegaConf.is_dict(ctx.cfg.get("trainer")) \
        else {}
    values.update({k: v for k, v in trainer.items() if k in fields.fields})
    if ctx.engine is not None:
        values["use_vllm"] = bool(getattr(ctx.engine, "uses_vllm", False))
    else:
        values.pop("use_vllm", None)
    return values


# Fields whose checks have rows of their own (TRL's batch arithmetic): TRL's conditions on them are not repeated.
OWN_ROWS = {"num_generations", "generation_batch_size", "steps_per_generation", "per_device_train_batch_size",
            "gradient_accumulation_steps"}


def trl_conditions(ctx, level: str):
    """TRL's own checks of field values (read from its source, r1exp.grpo.source) that hold for this config."""
    values = trl_values(ctx)
    for condition in grpo_fields().conditions:
        if condition.level != level or set(condition.fields) <= OWN_ROWS:
            continue
        if condition.holds(values):
            shown = {f: values.get(f) for f in condition.fields}
            changed = [f for f in condition.fields if values.get(f) != grpo_fields().default(f, values.get(f))]
            key = (changed or [f for f in condition.fields if f in (ctx.cfg.get("trainer") or {})]
                   or list(condition.fields))[0]
            yield Problem(f"trainer.{key}", shown[key],
                          f"TRL {'rejects' if level == 'error' else 'warns about'} "
                          f"{', '.join(f'{k}={v!r}' for k, v in shown.items())} ({condition.where}): "
                          f"{condition.text(values)}",
                          "change one of " + ", ".join(f"trainer.{f}" for f in condition.fields)
                          + " as TRL says", severity=level)


def trl_errors(ctx):
    yield from trl_conditions(ctx, "error")


def grpo_batch(ctx):
    """TRL's batch arithmetic (GRPOConfig.__post_init__), checked before TRL is imported."""
    cfg = ctx.cfg
    t = lambda key, fallback=None: trainer_value(cfg, key, fallback)  # noqa: E731
    values = {k: t(k) for k in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
                                "generation_batch_size", "steps_per_generation")}
    if any(v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in values.values()):
        return  # types and ranges have their own rules
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations"):
        if values[key] is None:
            yield Problem(f"trainer.{key}", None, "GRPO's batch arithmetic needs a number here, not null",
                          f"set trainer.{key} (TRL's default: {grpo_fields().default(key)})")
            return
    micro, accumulation, gens = (values["per_device_train_batch_size"], values["gradient_accumulation_steps"],
                                 values["num_generations"])
    gbs, spg = values["generation_batch_size"], values["steps_per_generation"]
    world = planned_world_size(cfg)
    global_batch = micro * world
    if gens < 2:
        yield Problem("trainer.num_generations", gens,
                      "GRPO compares completions of the same prompt: it needs at least 2 per prompt",
                      "set trainer.num_generations>=2 (8 is common)")
        return
    if gbs is not None and spg is not None:
        yield Problem("trainer.generation_batch_size", gbs,
                      "generation_batch_size and steps_per_generation cannot both be set (TRL derives one from the "
                      "other)", "remove one of trainer.generation_batch_size / trainer.steps_per_generation")
        return
    if gbs is not None:
        if gbs % global_batch:
            yield Problem("trainer.generation_batch_size", gbs,
                          f"must be divisible by the global batch per_device_train_batch_size x processes = "
                          f"{micro} x {world} = {global_batch}",
                          f"use a multiple of {global_batch}, e.g. trainer.generation_batch_size={_round_up(gbs, global_batch)}")
            return
    else:
        gbs = global_batch * (spg if spg is not None else accumulation)
    if gbs % gens:
        source = ("trainer.generation_batch_size" if values["generation_batch_size"] is not None else
                  "trainer.per_device_train_batch_size")
        derived = "" if values["generation_batch_size"] is not None else (
            f" (= per_device_train_batch_size {micro} x processes {world} x "
            f"{'steps_per_generation' if spg else 'gradient_accumulation_steps'} {spg or accumulation})")
        yield Problem(source, values["generation_batch_size"] or micro,
                      f"the generation batch {gbs}{derived} must hold whole groups of num_generations={gens} "
                      "completions per prompt", f"make it a multiple of {gens}: e.g. trainer.per_device_train_batch_size="
                      f"{_round_up(micro, gens)}{_num_generations_hint(gbs, gens)}")
    if str(t("eval_strategy", "no")) != "no":   # transformers turns do_eval on for any eval strategy
        eval_gens = t("num_generations_eval") or gens
        eval_batch = int(t("per_device_eval_batch_size", 8)) * world
        if eval_batch % eval_gens:
            yield Problem("trainer.per_device_eval_batch_size", t("per_device_eval_batch_size"),
                          f"the global eval batch {eval_batch} must be divisible by the eval generations {eval_gens}",
                          f"use a multiple of {eval_gens}")


LONG_SYSTEM_PROMPT = 2000   # characters: a system prompt this long is named when the lengths do not fit


def sequence_lengths(ctx):
    cfg = ctx.cfg
    completion = trainer_value(cfg, "max_completion_length", 256)
    if completion is None:
        yield Problem("trainer.max_completion_length", None, "the completion length bounds generation and memory: "
                      "it cannot be null", "set trainer.max_completion_length, e.g. 256")
    if not (isinstance(completion, int) and completion > 0):
        return
    estimate = prompt_estimate(cfg)
    prompt = estimate.tokens
    need = prompt + completion
    fix_prompt = {"given": "(the prompt length is data.max_prompt_tokens)",
                  "measured": "(the prompt length is measured on the data; data.max_prompt_tokens overrides it)",
                  "guess": "(the prompt length is a guess for data not readable here: set data.max_prompt_tokens)",
                  }[estimate.source]
    severity = "warning" if estimate.is_guess else "error"
    system = get(cfg, "data.system_prompt")
    if isinstance(system, str) and len(system) >= LONG_SYSTEM_PROMPT:   # in every prompt: the thing to shorten
        fix_prompt += f"; data.system_prompt alone is {len(system):,} characters of every prompt"
    seq = get(cfg, "model.max_seq_length")
    if isinstance(seq, int) and need > seq:
        yield Problem("model.max_seq_length", seq,
                      f"the longest prompt (~{prompt} tokens) + trainer.max_completion_length ({completion}) = {need} "
                      "tokens do not fit the model's max_seq_length",
                      f"set model.max_seq_length>={need}"
                      + (f", or lower trainer.max_completion_length to {seq - prompt}" if seq > prompt else "")
                      + f" {fix_prompt}", severity=severity)
    budget = ctx.engine.sequence_budget(cfg)  # (key, tokens) of an engine with a sequence limit of its own
    budget_key, model_len = budget if budget else ("", None)
    if isinstance(model_len, int) and need > model_len:
        yield Problem(budget_key, model_len,
                      f"the engine cannot hold prompt (~{prompt}) + completion ({completion}) = {need} tokens",
                      f"set {budget_key}>={need} or null (derived), or lower trainer.max_completion_length "
                      f"{fix_prompt}", severity=severity)
    position = get(cfg, "model.arch.max_position")
    if isinstance(position, int):
        for key, value in (("model.max_seq_length", seq), (budget_key, model_len)):
            if isinstance(value, int) and value > position:
                yield Problem(key, value, f"longer than the model's context window ({position} positions)",
                              f"set {key}<={position}")
        if need > position:
            yield Problem("trainer.max_completion_length", completion,
                          f"prompt + completion ({need} tokens) exceed the model's context ({position} positions)",
                          (f"set trainer.max_completion_length<={position - prompt}" if position > prompt else
                           f"the prompt alone (~{prompt} tokens) is too long for this model: shorten it")
                          + f" {fix_prompt}",
                          severity=severity)




def dict_fields(ctx):
    """GRPOConfig's dict fields hold a mapping; a string TRL does not parse reaches vLLM's or transformers' keyword
    arguments as it is and fails at the first generation, after the model loaded."""
    for key in ("generation_kwargs", "model_init_kwargs", "chat_template_kwargs"):
        if not isinstance(get(ctx.cfg, f"trainer.{key}"), str):   # a mapping passes; another type: trainer.type
            continue
        try:
            dict_field(ctx.cfg, key)
        except ValueError as e:
            yield Problem(f"trainer.{key}", get(ctx.cfg, f"trainer.{key}"),
                          f"TRL reads trainer.{key} as keyword arguments: a mapping, or a string holding a JSON "
                          f"object ({e})",
                          f"write it as a mapping: '+trainer.{key}={{name: value}}' (or a JSON object string)")


# GRPOConfig (TrainingArguments) settings that need evaluation metrics, and what they do without them. r1exp passes
# no eval_dataset to TRL (r1exp.build: train_dataset only), so none of them can work.
NEEDS_EVAL = {   # key -> (what happens, the fix)
    "eval_strategy": (("so transformers' Trainer refuses to start, after the model has loaded: \"You have set "
                       "`args.eval_strategy` to {value} but you didn't pass an `eval_dataset`\""),
                      "trainer.eval_strategy=no"),
    "eval_on_start": ("so the trainer stops before its first step: \"Trainer: evaluation requires an eval_dataset\"",
                      "trainer.eval_on_start=false"),
    "load_best_model_at_end": (("so there is no best checkpoint to load: the adapter saved is the last step's, not "
                                "the best"), "trainer.load_best_model_at_end=false"),
    "save_strategy": (("and save_strategy=best saves a checkpoint when an evaluation metric improves: the Trainer "
                       "refuses it without metric_for_best_model, and with one nothing is ever saved"),
                      "trainer.save_strategy=no (or steps)"),
    "lr_scheduler_type": (("and {value} steps the learning rate on an evaluation metric: TrainingArguments refuses "
                           "it without an eval strategy, and the Trainer refuses an eval strategy without eval data"),
                          "another scheduler, e.g. trainer.lr_scheduler_type=constant (or cosine, linear)"),
}
EVAL_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")
NO_EVAL_DATA = ("r1exp passes no eval_dataset to TRL without data.eval_split (a split of a file or hub dataset to "
                "evaluate on)")


def _needs_eval(key: str, value) -> bool:
    """True when `value` of trainer.<key> asks for evaluation (NEEDS_EVAL)."""
    if key == "eval_strategy":
        return value is not None and str(value) != "no"
    if key == "save_strategy":
        return str(value) == "best"
    if key == "lr_scheduler_type":
        return str(value) in EVAL_SCHEDULERS
    return value is True


def eval_settings(ctx):
    """TRL/transformers evaluation settings against the data the run has: an eval strategy (do_eval alone does
    nothing in transformers), eval_on_start, load_best_model_at_end, save_strategy=best or a metric-driven scheduler
    passes the dry run and fails at the build, or silently does nothing, because no eval dataset is passed."""
    values = trl_values(ctx)
    if get(ctx.cfg, "data.eval_split"):
        return   # the run has eval data: TRL evaluates on it (the eval batch has its row in trainer.batch)
    for key, (why, fix) in NEEDS_EVAL.items():
        value = values.get(key)
        if _needs_eval(key, value):
            yield Problem(f"trainer.{key}", value, f"{NO_EVAL_DATA}, {why.format(value=value)}",
                          f"set {fix}, or give the run a held-out split to evaluate on (data.eval_split=test)")
    metric = values.get("metric_for_best_model")
    if metric is not None and not any(_needs_eval(k, values.get(k)) for k in NEEDS_EVAL):
        yield Problem("trainer.metric_for_best_model", metric, f"{NO_EVAL_DATA}, so no evaluation metric picks a "
                      "best checkpoint: this key changes nothing", "drop trainer.metric_for_best_model",
                      severity="warning")


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def _num_generations_hint(batch: int, gens: int) -> str:
    """A num_generations below `gens` that divides the generation batch, as an alternative fix."""
    fitting = [d for d in range(2, gens) if batch % d == 0]
    return f", or trainer.num_generations={fitting[-1]}" if fitting else ""



RULES: list[Rule] = [
    Rule("trainer.keys", ("trainer.*",), trainer_keys,
         doc="trainer keys are GRPOConfig fields (did you mean ...) and not ones r1exp derives from other groups"),
    Rule("trainer.type", ("trainer.*",), trainer_types,
         doc="trainer values have the type (and enum value) of the installed GRPOConfig's annotation"),
    Rule("trainer.deprecated", ("trainer.*",), trainer_deprecated,
         doc="a deprecated GRPOConfig field warns with TRL's message and its replacement (read from the installed TRL)"),
    Rule("trainer.trl_checks", ("trainer.*",), trl_errors,
         doc="value combinations the installed TRL rejects (its __post_init__ / GRPOTrainer.__init__ raises, read "
             "from its source)"),
    Rule("trainer.dict_fields", ("trainer.generation_kwargs", "trainer.model_init_kwargs",
                                 "trainer.chat_template_kwargs"), dict_fields,
         doc="GRPOConfig's keyword-argument fields hold a mapping (or a JSON object string, as TRL parses it)"),
    Rule("trainer.batch", ("trainer.per_device_train_batch_size", "trainer.gradient_accumulation_steps",
                           "trainer.num_generations", "trainer.generation_batch_size", "trainer.steps_per_generation"),
         grpo_batch, doc="GRPO batch arithmetic with the meaning of GRPOConfig.__post_init__"),
    Rule("trainer.eval", tuple(f"trainer.{k}" for k in (*NEEDS_EVAL, "metric_for_best_model")), eval_settings,
         doc="no evaluation setting without eval data: r1exp passes no eval_dataset to TRL (an eval strategy would "
             "fail at the build)"),
    Rule("lengths", ("trainer.max_completion_length", "model.max_seq_length", "engine.max_model_len",
                     "model.arch.max_position", "data.max_prompt_tokens"), sequence_lengths,
         doc="prompt + completion fit max_seq_length, the engine's length and the model's context"),
]
