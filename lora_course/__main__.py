"""``python -m lora_course <command>``: the course's command line.

Commands: doctor (what works here), execute (re-run notebooks and save their outputs),
slides (an offline reveal.js deck per notebook).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _doctor(args) -> int:
    from lora_course.doctor import report

    table = report()
    print(table.to_string(index=False))
    return 0 if (table["status"] == "OK").all() else 1


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
        nbformat.write(nb, path)
        print(f"executed {path}")
    return 0


def _slides(args) -> int:
    from lora_course.slides import SlidesError, build_all

    notebooks = args.notebooks or sorted(Path("notebooks").glob("*.ipynb"))
    try:
        decks = build_all(notebooks, args.out)
    except SlidesError as err:
        print(f"slides: {err}", file=sys.stderr)
        return 2
    for deck in decks:
        print(f"wrote {deck}")
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

    p = sub.add_parser("slides", help="build an offline reveal.js deck per notebook")
    p.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    p.add_argument(
        "--out", default="build/slides", help="folder for the decks (default %(default)s)"
    )
    p.set_defaults(func=_slides)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
