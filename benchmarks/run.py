"""``make bench``: one table of ratios measured side by side in one run.

Rows (see each module's docstring): 1-3 ``bench_lora``, 4 ``bench_nf4``, 5 ``bench_finetune``,
6 ``bench_notebooks``, 7 ``bench_dtype``, 8 ``bench_grading``,
9 ``bench_memory`` (training-memory estimate vs measured peak). The ``bf16`` column says,
for rows 6 and 7, whether bf16 was native or emulated where they ran; ``--avx2`` adds row 6
once more with torch's AVX2 code paths forced (``bench_dtype.EMULATE``: emulated bf16, as on a
CPU without AVX512-BF16).
Prints a markdown table with the machine and date; ``--out FILE`` also writes it there.
``--quick`` runs fewer sizes and repetitions (a smoke test, not a result).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dtype  # noqa: E402
import bench_finetune  # noqa: E402
import bench_grading  # noqa: E402
import bench_lora  # noqa: E402
import bench_memory  # noqa: E402
import bench_nf4  # noqa: E402
import bench_notebooks  # noqa: E402
from timing import machine  # noqa: E402


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| row | what | measured | target | met | detail | bf16 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(
            f"| {r['row']} | {r['what']} | {_fmt(r['value'])} | {r['target']} | {met} "
            f"| {r['detail']} | {r.get('bf16', '-')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--skip-notebooks", action="store_true", help="leave out row 6")
    parser.add_argument("--avx2", action="store_true", help="row 6 again on the AVX2 code paths")
    parser.add_argument("--skip-grading", action="store_true", help="leave out row 8")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)

    repeats = 3 if args.quick else 7
    rows = bench_lora.rows(
        sizes=(1024,) if args.quick else (1024, 4096),
        ranks=(8,) if args.quick else (8, 64),
        repeats=repeats,
    )
    rows += bench_nf4.rows(size=1024 if args.quick else 4096, repeats=repeats)
    rows += bench_finetune.rows(steps=3 if args.quick else 20)
    rows += bench_dtype.rows(repeats=repeats)
    if not args.skip_notebooks:
        rows += bench_notebooks.rows()
        if args.avx2:
            rows += bench_notebooks.rows(env=bench_dtype.EMULATE, label="AVX2 code paths forced")
    if not args.skip_grading:
        rows += bench_grading.rows()
    rows += bench_memory.rows(bench_memory.MODELS[:1] if args.quick else bench_memory.MODELS)

    today = datetime.date.today().isoformat()
    text = f"Measured {today} on {machine()}.\n\n{table(rows)}\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
