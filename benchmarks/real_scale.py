"""Real scale on a CPU: footprints and training steps of a shape-true Llama, measured.

``make bench-real-scale`` (or ``python benchmarks/real_scale.py --model Llama-3.2-1B``) runs
``lora_course.machinery.real_scale.measure``: it builds a shape-true folder once (random
weights, the real layout; cached), then loads and trains it one fresh process at a time and writes
``data/measurements/<model>-cpu.json``. Llama-3.2-1B takes about 5 GB of memory at its largest
(fp32 LoRA) and tens of minutes on a 2-core CPU; it is not part of ``make test``.

``--quick`` measures only the footprints and the 1 x 128 steps; ``--steps qlora`` only QLoRA;
``--reprice`` measures nothing: it writes today's estimates beside the saved measurements (after
a deliberate change to the estimator; the measurements stay as they were measured).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lora_course.machinery import real_scale  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Llama-3.2-1B", help="a name in data/model-configs")
    parser.add_argument("--out", help="results file (default data/measurements/<model>-cpu.json)")
    parser.add_argument("--quick", action="store_true", help="1 x 128 steps only")
    parser.add_argument("--steps", choices=("all", "lora", "qlora", "none"), default="all")
    parser.add_argument(
        "--schemes", default=",".join(real_scale.FOOTPRINT_SCHEMES), help="footprint schemes"
    )
    parser.add_argument("--resume", action="store_true", help="keep rows already measured")
    parser.add_argument(
        "--reprice", action="store_true", help="re-price the saved measurements, measure nothing"
    )
    args = parser.parse_args(argv)
    if args.reprice:
        results = real_scale.update_estimates(args.model, args.out)
        print(real_scale.step_table(results).to_string(index=False))
        return 0
    steps = [
        s
        for s in real_scale.STEP_SPECS
        if args.steps in ("all", s["method"]) and not (args.quick and s["seq_len"] != 128)
    ]
    schemes = [s for s in args.schemes.split(",") if s]
    results = real_scale.measure(
        args.model, steps=steps, schemes=schemes, out=args.out, resume=args.resume
    )
    print(real_scale.footprint_table(results).to_string(index=False))
    print(real_scale.step_table(results).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
