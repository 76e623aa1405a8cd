"""The instructor's commands of ``python -m lora_course``: release, grade, review, gradebook,
gradescope and slides (:func:`add_commands` adds them to the command line's parser).

Each command reads its flags, calls the classroom module that does the work, and prints what it
wrote; a refusal is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_commands"]


def _masters_folder(given: str | None) -> Path:
    """--masters, else ./notebooks, else the notebooks beside this package (an editable install)."""
    if given:
        return Path(given)
    here = Path("notebooks")
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "notebooks"


def _release(args) -> int:
    from lora_course.classroom.release import MarkerError, master_notebooks, release_all

    try:
        masters = [Path(n) for n in args.notebooks] or master_notebooks(
            _masters_folder(args.masters)
        )
        missing = [str(p) for p in masters if not p.is_file()]
        if missing:
            print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
            return 2
        written = release_all(masters, args.out, missing_only=args.missing_only)
    except (MarkerError, FileNotFoundError) as exc:
        print(f"release refused: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"released {path}")
    if args.missing_only and len(written) < len(masters):
        print(f"kept {len(masters) - len(written)} existing notebook(s) in {args.out}")
    return 0


def _sandbox_or_warn(no_sandbox: bool) -> str | None:
    """None to grade sandboxed; "" to grade without (warned); or why grading must stop."""
    from lora_course.classroom.sandbox import SANDBOX_WARNING, sandbox_problem

    if no_sandbox:
        print(f"WARNING: --no-sandbox: {SANDBOX_WARNING}", file=sys.stderr)
        return ""
    problem = sandbox_problem()
    if not problem:
        return None
    if sys.platform.startswith("linux"):
        return f"{problem}; or pass --no-sandbox to grade without it (not for untrusted work)"
    print(f"WARNING: no sandbox: {problem}. {SANDBOX_WARNING}", file=sys.stderr)
    return ""


def _grade(args) -> int:
    from tqdm import tqdm

    from lora_course.classroom.gradebook import write_outputs
    from lora_course.classroom.grading import grade
    from lora_course.classroom.lms import read_roster
    from lora_course.classroom.record import (
        fingerprint,
        parse_shard,
        read_record,
        record_path,
        shard_of,
    )
    from lora_course.classroom.sandbox import Limits
    from lora_course.classroom.submissions import find_submissions, hidden_entries, load_masters

    try:
        masters = load_masters(_masters_folder(args.masters))
        exercise_ids = sorted({ex for m in masters for ex in m.exercises})
        shard = parse_shard(args.shard)
        roster = read_roster(args.roster)
        listing = [found.name for found in find_submissions(args.submissions)]
        limits = Limits(
            memory=int(args.memory_limit * 2**30),
            processes=args.process_limit,
            disk=int(args.disk_limit * 2**30),
            output=int(args.output_limit * 1e6),
            submission=int(args.size_limit * 1e6),
        )
        if min(args.memory_limit, args.process_limit, args.disk_limit, args.output_limit,
               args.size_limit) < 0:  # fmt: skip
            raise ValueError("a limit must be a positive number (0 turns it off)")
        hidden = hidden_entries(args.submissions)
        if hidden:
            print(f"skipped (hidden: names start with '.'): {', '.join(hidden)}", file=sys.stderr)
        mine = shard_of(listing, *shard)
        if roster is not None and set(mine) - set(roster.index):
            missing = sorted(set(mine) - set(roster.index))
            raise ValueError(f"the roster has no row for {missing[:5]} ({len(missing)} in all)")
        stop = _sandbox_or_warn(args.no_sandbox)
        if stop:
            raise ValueError(stop)
        grader = fingerprint([m.path for m in masters])
        previous = None
        if not args.force and record_path(args.out).is_file():
            meta, old = read_record(record_path(args.out))
            if meta["fingerprint"] == grader:
                previous = {s.name: s for s in old}
        with tqdm(total=len(mine), desc="grading", unit="submission", file=sys.stderr) as bar:

            def done(sub):
                bar.update(1)
                bar.set_postfix_str(f"{sub.name}: {sub.status}")

            subs = grade(
                args.submissions,
                masters,
                args.jobs,
                args.cell_timeout,
                args.timeout,
                done,
                sandbox=stop is None,
                shard=shard,
                previous=previous,
                limits=limits,
            )
    except (ValueError, FileNotFoundError) as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    record = {"fingerprint": grader, "shard": shard, "listing": listing}
    paths = write_outputs(subs, exercise_ids, args.out, record, roster)
    counts = {}
    for sub in subs:
        counts[sub.status] = counts.get(sub.status, 0) + 1
    reused = sum(s.reused for s in subs)
    where = f" (shard {shard[0]}/{shard[1]})" if shard != (1, 1) else ""
    print(
        f"graded {len(subs)} submission(s){where}: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + (f"; {reused} unchanged since the last gradebook, not re-run" if reused else "")
    )
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


def _gradebook(args) -> int:
    from lora_course.classroom.gradebook import write_outputs
    from lora_course.classroom.lms import read_roster
    from lora_course.classroom.record import (
        MergeError,
        merge_records,
        read_record,
        record_path,
    )

    if args.action == "demo-class":
        from lora_course.classroom.classgen import generate_class

        kinds = generate_class(_masters_folder(args.masters), args.out, args.size)
        counts = {k: list(kinds.values()).count(k) for k in dict.fromkeys(kinds.values())}
        print(f"wrote {len(kinds)} learner folders in {args.out}: {counts}")
        return 0
    try:
        parts = []
        for part in args.parts:
            path = Path(part)
            parts.append(read_record(path if path.suffix == ".json" else record_path(path)))
        meta, subs = merge_records(parts)
        paths = write_outputs(subs, meta["exercise_ids"], args.out, {
            k: meta[k] for k in ("fingerprint", "listing")
        }, read_roster(args.roster))  # fmt: skip
    except (MergeError, ValueError, FileNotFoundError) as exc:
        print(f"gradebook merge refused: {exc}", file=sys.stderr)
        return 2
    print(f"merged {len(parts)} part(s): {len(subs)} submission(s)")
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


def _review(args) -> int:
    from lora_course.classroom.gradebook import write_outputs
    from lora_course.classroom.lms import read_roster
    from lora_course.classroom.record import read_record, record_path
    from lora_course.classroom.review import apply_reviews, read_reviews, review_path

    try:
        meta, subs = read_record(record_path(args.gradebook))
        problems = apply_reviews(subs, read_reviews(review_path(args.gradebook)))
        if problems:
            raise ValueError("; ".join(problems[:5]))
        record = {k: meta[k] for k in ("fingerprint", "shard", "listing")}
        paths = write_outputs(subs, meta["exercise_ids"], args.gradebook, record,
                              read_roster(args.roster))  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        print(f"review: {exc}", file=sys.stderr)
        return 2
    waiting = sum(any(r.needs_review for r in s.results.values()) for s in subs)
    print(f"review points merged; {waiting} submission(s) still wait for a person")
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


def _gradescope(args) -> int:
    from lora_course.classroom import gradescope
    from lora_course.classroom.submissions import load_masters

    folder = _masters_folder(args.masters)
    if args.run:
        data = gradescope.run(args.run, args.results, folder)
        print(f"score {data['score']:g} over {len(data['tests'])} tests -> {args.results}")
        return 0
    bundle = gradescope.build_bundle(args.out, [m.path for m in load_masters(folder)])
    print(f"wrote {bundle}: upload it as the assignment's autograder (zip file)")
    return 0


def _slides(args) -> int:
    from lora_course.classroom.slides import SlidesError, build_all

    notebooks = args.notebooks or sorted(Path("notebooks").glob("*.ipynb"))
    try:
        decks = build_all(notebooks, args.out, solutions=args.solutions)
    except SlidesError as err:
        print(f"slides: {err}", file=sys.stderr)
        return 2
    for deck in decks:
        print(f"wrote {deck}")
    return 0


def add_commands(sub) -> None:
    """Add the instructor's subcommands to ``sub`` (an ``argparse`` subparsers object)."""
    p = sub.add_parser("release", help="write student notebooks (solutions removed)")
    p.add_argument("notebooks", nargs="*", help="master notebooks (default: MASTERS/NN_*.ipynb)")
    p.add_argument("--masters", help="folder of master notebooks (default: notebooks)")
    p.add_argument("--out", default="release", help="folder for the student notebooks")
    p.add_argument(
        "--missing-only",
        action="store_true",
        help="write only notebooks that do not exist in --out yet (keeps a learner's edits)",
    )
    p.set_defaults(func=_release)

    p = sub.add_parser("grade", help="grade a folder of submissions into a gradebook")
    p.add_argument("submissions", help="folder of .ipynb files, or of one folder per learner")
    p.add_argument("--out", default="gradebook.csv", help="gradebook path (default gradebook.csv)")
    p.add_argument("--masters", help="folder of master notebooks (default: notebooks)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    p.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds per exercise notebook, kernel start included (default 600)",
    )
    p.add_argument(
        "--cell-timeout",
        type=float,
        default=300,
        help="seconds per cell (default 300: exercise 3's largest allowed sweep, 3 times over)",
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run learner code with your rights, unsandboxed (trusted work only)",
    )
    p.add_argument("--shard", default="1/1", help="grade the Kth of N slices: K/N (default 1/1)")
    p.add_argument("--force", action="store_true", help="re-run submissions that did not change")
    p.add_argument("--roster", help="CSV of platform ids per submission (docs/instructors.md)")
    for flag, default, what in (
        ("--memory-limit", 4.0, "GiB of address space per kernel process"),
        ("--process-limit", 128, "processes and threads per kernel"),
        ("--disk-limit", 1.0, "GiB a kernel may write (one file, /tmp; its folder as root)"),
        ("--output-limit", 8.0, "MB of cell output kept per notebook"),
        ("--size-limit", 100.0, "MB of files per submission (more is not graded)"),
    ):
        kind = int if isinstance(default, int) else float
        p.add_argument(
            flag, type=kind, default=default, help=f"{what}; 0: none (default %(default)s)"
        )
    p.set_defaults(func=_grade)

    p = sub.add_parser(
        "review", help="merge the points a person gave (GRADEBOOK-review.csv) into every output"
    )
    p.add_argument("gradebook", help="the gradebook CSV that grade wrote (e.g. gradebook.csv)")
    p.add_argument("--roster", help="CSV mapping submission names to platform ids (README)")
    p.set_defaults(func=_review)

    p = sub.add_parser("gradebook", help="merge partial gradebooks; generate a demo class")
    p.add_argument("action", choices=["merge", "demo-class"])
    p.add_argument("out", help="merge: the gradebook to write; demo-class: a folder to fill")
    p.add_argument("parts", nargs="*", help="merge: the partial gradebooks (their .csv)")
    p.add_argument("--roster", help="CSV of platform ids per submission (docs/instructors.md)")
    p.add_argument("--size", type=int, default=30, help="demo-class: learners (default 30)")
    p.add_argument("--masters", help="folder of master notebooks (default: notebooks)")
    p.set_defaults(func=_gradebook)

    p = sub.add_parser("gradescope", help="build a Gradescope autograder zip (or run inside it)")
    p.add_argument("--out", default="autograder.zip", help="the zip (default %(default)s)")
    p.add_argument("--masters", help="folder of master notebooks (default: notebooks)")
    p.add_argument("--run", help=argparse.SUPPRESS)  # run_autograder: the submission folder
    p.add_argument("--results", default="results.json", help=argparse.SUPPRESS)
    p.set_defaults(func=_gradescope)

    p = sub.add_parser("slides", help="build an offline reveal.js deck per notebook")
    p.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    p.add_argument(
        "--out", default="build/slides", help="folder for the decks (default %(default)s)"
    )
    p.add_argument(
        "--solutions",
        action="store_true",
        help="exercises: build the instructor's deck from the master (NN.solutions.slides.html) "
        "instead of the learners' deck from the student release",
    )
    p.set_defaults(func=_slides)
