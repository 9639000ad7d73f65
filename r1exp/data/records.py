"""From a file's records to Examples: which field is the question and which the answer, how the answer is written,
and which other fields stay as dataset columns (rewards read them by name)."""

from __future__ import annotations

from r1exp.data import gsm8k
from r1exp.data.example import Example

# data.answer_format -> (text -> (reasoning, answer))
ANSWER_FORMATS = {
    "plain": lambda text: ("", str(text).strip()),
    "gsm8k": gsm8k.split_answer,
}


class FieldError(ValueError):
    """A configured field is missing from a record (a column mismatch: say which fields there are)."""


def example_of(record: dict, data_cfg) -> Example:
    prompt_field, answer_field = str(data_cfg.prompt_field), str(data_cfg.answer_field)
    keep = [str(k) for k in (data_cfg.get("keep_fields") or [])]
    reasoning_field = data_cfg.get("reasoning_field")
    wanted = [prompt_field, answer_field, *keep] + ([str(reasoning_field)] if reasoning_field else [])
    missing = [f for f in wanted if f not in record]
    if missing:
        raise FieldError(f"the data has no field {', '.join(map(repr, missing))}; its fields are {sorted(record)}")
    reasoning, answer = ANSWER_FORMATS[str(data_cfg.get("answer_format") or "plain")](record[answer_field])
    if reasoning_field:
        reasoning = str(record[reasoning_field])
    prompt = record[prompt_field]
    messages: tuple = ()
    if isinstance(prompt, list):  # already chat messages
        messages = tuple(dict(m) for m in prompt)
        question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    else:
        template = data_cfg.get("prompt_template")
        question = str(template).format(**record) if template else str(prompt)
    return Example(question=question, answer=answer, reasoning=reasoning,
                   extra=tuple((k, record[k]) for k in keep), messages=messages)
