"""The check functions behind the rows of `r1exp.config.rules.RULES`, one module per topic.

Each check takes a `validate.Context` and yields `Problem`s; it reads the composed config and facts about the
machine (`environment.Environment`) and never imports torch, vLLM, TRL or Unsloth.
"""
