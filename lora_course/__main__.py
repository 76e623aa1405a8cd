"""``python -m lora_course <command>``: the course's command line.

Commands: doctor (what works here), execute (re-run notebooks and save their outputs),
release (student notebooks from the masters), grade (a folder of submissions -> gradebook),
gradebook (merge shards; a demo class), gradescope (an autograder bundle),
build-model (rebuild the offline tiny Llama from scratch), slides (an offline reveal.js deck
per notebook), finetune (LoRA fine-tuning; data parallel under ``accelerate launch``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_course.classroom.cli import add_commands


def _doctor(args) -> int:
    from lora_course.machinery.doctor import report

    table = report()
    print(table.to_string(index=False))
    return 0 if (table["status"] == "OK").all() else 1


def _coalesce_streams(cell) -> None:
    """Join consecutive stdout (or stderr) outputs: how a print is split into messages depends
    on timing, and saved notebooks should not change with it."""
    merged = []
    for out in cell.get("outputs", []):
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and out.get("output_type") == prev.get("output_type") == "stream"
            and out.get("name") == prev.get("name")
        ):
            prev["text"] += out["text"]
        else:
            merged.append(out)
    if "outputs" in cell:
        cell["outputs"] = merged


def _execute(args) -> int:
    import nbformat
    from nbclient import NotebookClient

    for name in args.notebooks:
        path = Path(name)
        if not path.is_file():
            print(f"no such notebook: {path}", file=sys.stderr)
            return 2
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb,
            kernel_name="python3",  # the kernel of this environment, whatever the metadata says
            timeout=args.timeout,
            record_timing=False,  # no timestamps: re-running an unchanged notebook changes no byte
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
        for cell in nb.cells:
            _coalesce_streams(cell)
        nbformat.write(nb, path)
        print(f"executed {path}")
    return 0


def _build_model(args) -> int:
    from lora_course.machinery.build_model import TINY_MODEL_DIR, build_model

    if args.quick and args.output is None:
        print(
            "--quick builds a toy model: give it --output DIR so data/tiny-llama is kept",
            file=sys.stderr,
        )
        return 2
    output = Path(args.output) if args.output else TINY_MODEL_DIR
    summary = build_model(output, quick=args.quick, progress=not args.no_progress)
    print(
        f"built {output}: {summary['parameters']:,} parameters, final loss "
        f"{summary['final_loss']:.3f}, {summary['seconds']:.0f} s"
    )
    return 0


def _finetune(args) -> int:
    import os

    from lora_course.machinery.distributed import finetune_data_parallel

    options = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    try:
        result = finetune_data_parallel(**options)
    except RuntimeError as exc:  # a launch that cannot give what was asked for
        print(f"finetune: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # one report, not one per process
        print(
            f"held-out accuracy {result['accuracy']:.3f} on {result['test_items']} items after "
            f"{result['steps']} steps (final loss {result['final_loss']:.3f}); "
            f"{result['processes']} process(es), backend {result['backend']}, "
            f"{result['items_per_process']} training items per process, "
            f"{result['overlap']} taken twice in a step; {result['seconds']:.1f} s"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="print versions and what works on this machine")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("execute", help="run notebooks top to bottom and save them with outputs")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    p.set_defaults(func=_execute)

    add_commands(sub)  # release, grade, review, gradebook, gradescope, slides: classroom/cli.py

    p = sub.add_parser("build-model", help="rebuild data/tiny-llama from scratch (minutes)")
    p.add_argument("--output", help="folder to write (default data/tiny-llama)")
    p.add_argument("--quick", action="store_true", help="a toy model in seconds, for tests")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_build_model)

    p = sub.add_parser(
        "finetune",
        help="LoRA fine-tuning; data parallel under `accelerate launch` (docs/learners.md)",
    )
    p.add_argument("--model-name", help="hub id or folder (default $LORA_COURSE_MODEL or tiny)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps (default 60)")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (default 3e-3)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch (default 16)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    p.add_argument("--alpha", type=float, default=16, help="LoRA alpha (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--cpu", action="store_true", default=None, help="train on the CPU")
    p.set_defaults(func=_finetune)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
