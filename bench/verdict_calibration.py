"""The noise verdict on real CPU runs: a saved run against others that differ only in their seed (same training,
other draws) or in the learning rate (a real change), over their first 3, 10, 20 and all steps.

    python -m r1exp logger=none hydra.run.dir=/tmp/cal/base                 # seed 42, the default run
    python -m r1exp logger=none seed=43 hydra.run.dir=/tmp/cal/seed43        # same training, other draws
    python -m r1exp logger=none seed=44 hydra.run.dir=/tmp/cal/seed44
    python -m r1exp logger=none trainer.learning_rate=1e-2 hydra.run.dir=/tmp/cal/lr1e-2
    python bench/verdict_calibration.py /tmp/cal/base /tmp/cal/seed43 /tmp/cal/seed44 /tmp/cal/lr1e-2

`--without=learning_rate` leaves a column out (to see whether the judged metrics alone see the change).
"""

from __future__ import annotations

import sys


from r1exp.records import metrics
from r1exp.records import verdict


def main(argv: list[str]) -> None:
    left_out = {a.split("=", 1)[1] for a in argv if a.startswith("--without=")}
    base, *others = [a for a in argv if not a.startswith("--")]

    def rows(path):
        return [{k: v for k, v in r.items() if k not in left_out}
                for r in metrics.step_rows(metrics.read_metrics(path))]

    saved = rows(base)
    for other in others:
        new = rows(other)
        for n in sorted({3, 10, 20, min(len(saved), len(new))}):
            c = verdict.compare(saved[:n], new[:n], "noise")
            first = f"beyond noise at step {c.first.step} in {c.first.metric} ({c.first.why})" if c.first else "within"
            largest = f"{c.largest[0]} step {c.largest[1]}: {c.largest[2]:.2g}" if c.largest else "-"
            print(f"{other}\t{n} steps\t{first}\tlargest excess {largest}")


if __name__ == "__main__":
    main(sys.argv[1:])
