"""Held-out evaluation: did the experiment work on prompts the model did not train on (conf/eval/)."""
