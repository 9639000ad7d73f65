"""Everything that runs before any weight is loaded: composition, the machine, validation rules, the memory plan.

Nothing in this package imports torch, vLLM, Unsloth or TRL: checking a run must take about a second anywhere.
"""
