"""The grader's full record as JSON, content hashes for regrades, and shards for many machines.

``gradebook.csv`` holds points; ``gradebook-results.json`` (beside it) holds everything the
report, the platform files, a regrade and a merge need::

    {"format": 1, "exercise_ids": [...], "fingerprint": "<masters + checks>",
     "shard": [K, N], "listing": [every submission name in the folder],
     "submissions": [{"name", "path", "status", "message", "content_hash",
                      "runs": [{"notebook", "master", "status", "message", "seconds",
                                "cell_errors", "notes", "results": {id: CheckResult.to_dict()}}]}]}

- **Content hash** (:func:`lora_course.classroom.files.content_hash`): SHA-256 over a
  submission's relative file names and bytes. A regrade reuses a row whose hash and grader
  **fingerprint** (:func:`fingerprint`: the masters' bytes and the checks' source) are both
  unchanged.
- **Shards** (:func:`shard_of`): submissions sorted by name, the Kth of N takes every Nth
  (positions K-1, K-1+N, ...): the same folder always splits the same way.
- **Merge** (:func:`merge_records`): parts of one folder (same listing, same N), each shard
  exactly once and no submission twice; anything else is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from lora_course.checks import CheckResult
from lora_course.classroom.files import atomic_write
from lora_course.classroom.results import NotebookRun, Submission

__all__ = [
    "FORMAT",
    "MergeError",
    "fingerprint",
    "parse_shard",
    "shard_of",
    "record_path",
    "to_record",
    "write_record",
    "read_record",
    "merge_records",
]

FORMAT = 1


class MergeError(ValueError):
    """Partial gradebooks that do not join into one class: overlap, gap or mismatch."""


def fingerprint(master_paths: list[Path]) -> str:
    """SHA-256 of what decides a grade besides the submission: the masters and the checks."""
    import lora_course.checks as checks

    digest = hashlib.sha256()
    sources = sorted(Path(checks.__file__).parent.glob("*.py"))
    for path in [*sorted(Path(p) for p in master_paths), *sources]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 1 <= K <= N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def shard_of(names: list[str], k: int, n: int) -> list[str]:
    """The Kth of N slices of ``names``: sorted, positions K-1, K-1+N, K-1+2N, ..."""
    return sorted(names)[k - 1 :: n]


def record_path(gradebook: str | Path) -> Path:
    """``DIR/NAME.csv`` -> ``DIR/NAME-results.json``."""
    stem = Path(gradebook).with_suffix("")
    return stem.parent / f"{stem.name}-results.json"


def _run_dict(run: NotebookRun) -> dict:
    data = asdict(run)
    del data["shown"]  # learners' outputs stay out of the record
    data["results"] = {ex: r.to_dict() for ex, r in run.results.items()}
    return data


def _run_from(data: dict) -> NotebookRun:
    run = NotebookRun(**{k: v for k, v in data.items() if k != "results"})
    run.cell_errors = [tuple(e) for e in run.cell_errors]
    run.results = {ex: CheckResult.from_dict(r) for ex, r in data["results"].items()}
    return run


def to_record(
    subs: list[Submission],
    exercise_ids: list[str],
    fingerprint: str = "",
    shard: tuple[int, int] = (1, 1),
    listing: list[str] | None = None,
) -> dict:
    """The JSON-ready record of a grading run (see the module docstring)."""
    return {
        "format": FORMAT,
        "exercise_ids": list(exercise_ids),
        "fingerprint": fingerprint,
        "shard": list(shard),
        "listing": sorted(listing if listing is not None else [s.name for s in subs]),
        "submissions": [
            {
                "name": s.name,
                "path": str(s.path),
                "status": s.status,
                "message": s.message,
                "content_hash": s.content_hash,
                "runs": [_run_dict(r) for r in s.runs],
            }
            for s in subs
        ],
    }


def write_record(path: Path, record: dict) -> None:
    atomic_write(path, json.dumps(record, indent=1).encode("utf-8"))


def read_record(path: str | Path) -> tuple[dict, list[Submission]]:
    """(the record's metadata, its submissions rebuilt); ``ValueError`` on a foreign file."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a lora-course grading record (format {FORMAT})")
    subs = []
    for s in data["submissions"]:
        sub = Submission(s["name"], Path(s["path"]), status=s["status"], message=s["message"])
        sub.content_hash = s.get("content_hash", "")
        sub.runs = [_run_from(r) for r in s["runs"]]
        subs.append(sub)
    meta = {k: v for k, v in data.items() if k != "submissions"}
    return meta, subs


def merge_records(parts: list[tuple[dict, list[Submission]]]) -> tuple[dict, list[Submission]]:
    """Join the records of shards 1..N of one folder; :class:`MergeError` says what is wrong."""
    if not parts:
        raise MergeError("nothing to merge: give the partial gradebooks")
    first = parts[0][0]
    n = first["shard"][1]
    for meta, _ in parts:
        for key in ("listing", "exercise_ids", "fingerprint"):
            if meta[key] != first[key]:
                raise MergeError(f"the parts differ in {key}: they were not graded alike")
        if meta["shard"][1] != n:
            raise MergeError(f"the parts were cut in different numbers of shards ({n} and "
                             f"{meta['shard'][1]})")  # fmt: skip
    shards = sorted(meta["shard"][0] for meta, _ in parts)
    repeated = sorted({k for k in shards if shards.count(k) > 1})
    if repeated:
        raise MergeError(f"overlap: shard(s) {repeated} of {n} given more than once")
    missing = sorted(set(range(1, n + 1)) - set(shards))
    if missing:
        raise MergeError(f"gap: shard(s) {missing} of {n} missing")
    seen: dict[str, int] = {}
    subs = []
    for meta, part in parts:
        for sub in part:
            if sub.name in seen:
                raise MergeError(f"overlap: {sub.name} is in shards {seen[sub.name]} and "
                                 f"{meta['shard'][0]}")  # fmt: skip
            seen[sub.name] = meta["shard"][0]
            subs.append(sub)
    absent = sorted(set(first["listing"]) - set(seen))
    if absent:
        raise MergeError(f"gap: {len(absent)} submission(s) graded by no part: {absent[:5]}")
    merged = dict(first, shard=[1, 1])
    return merged, sorted(subs, key=lambda s: s.name)
