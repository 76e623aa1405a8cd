"""Shards, merge and regrades: deterministic slices, joins that refuse overlaps and gaps, and a
regrade that re-runs only what changed."""

import nbformat
import pandas as pd
import pytest
from class_results import small_class
from grading_notebooks import MASTER_NAME, SOLUTION, WRONG, answer, write_master

from lora_course.__main__ import main
from lora_course.classroom.files import content_hash
from lora_course.classroom.record import (
    MergeError,
    merge_records,
    parse_shard,
    read_record,
    record_path,
    shard_of,
    to_record,
    write_record,
)
from lora_course.classroom.release import release_all

EXERCISES = ["exercise_1"]


def test_shards_cover_every_name_once_and_do_not_depend_on_order():
    names = [f"learner-{i:02d}" for i in range(31)]
    slices = [shard_of(list(reversed(names)), k, 4) for k in range(1, 5)]
    assert sorted(n for s in slices for n in s) == sorted(names)
    assert slices[0] == shard_of(names, 1, 4)
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "2"])
def test_bad_shard_is_named(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def _parts(subs, n, drop=None):
    names = [s.name for s in subs]
    parts = []
    for k in range(1, n + 1):
        mine = [s for s in subs if s.name in shard_of(names, k, n) and s.name != drop]
        record = to_record(mine, EXERCISES, "fp", (k, n), names)
        parts.append(({k: v for k, v in record.items() if k != "submissions"}, mine))
    return parts


def test_merge_joins_shards_into_the_whole_class(tmp_path):
    subs = small_class()
    for k, (meta, part) in enumerate(_parts(subs, 3), start=1):
        write_record(tmp_path / f"p{k}.json", to_record(part, EXERCISES, "fp", (k, 3),
                                                         meta["listing"]))  # fmt: skip
    parts = [read_record(tmp_path / f"p{k}.json") for k in (3, 1, 2)]
    meta, merged = merge_records(parts)
    assert [s.name for s in merged] == sorted(s.name for s in subs)
    assert [s.results["exercise_1"].score for s in merged] == [5, 4, 4, 0, 0]
    assert meta["shard"] == [1, 1]


def test_merge_refuses_overlaps_gaps_and_mismatches():
    subs = small_class()
    parts = _parts(subs, 2)
    with pytest.raises(MergeError, match="overlap: shard"):
        merge_records([parts[0], parts[0], parts[1]])
    with pytest.raises(MergeError, match="gap: shard"):
        merge_records([parts[0]])
    with pytest.raises(MergeError, match="gap: 1 submission"):
        merge_records(_parts(subs, 2, drop="bob"))
    moved = (parts[1][0], [*parts[1][1], parts[0][1][0]])  # one learner in both parts
    with pytest.raises(MergeError, match="overlap: ada"):
        merge_records([parts[0], moved])
    other = (dict(parts[1][0], fingerprint="other"), parts[1][1])
    with pytest.raises(MergeError, match="fingerprint"):
        merge_records([parts[0], other])


def test_content_hash_follows_content_not_time(tmp_path):
    folder = tmp_path / "learner"
    folder.mkdir()
    (folder / "a.ipynb").write_text("one")
    first = content_hash(folder)
    (folder / "a.ipynb").write_text("one")
    assert content_hash(folder) == first
    (folder / "a.ipynb").write_text("two")
    assert content_hash(folder) != first


@pytest.mark.slow
def test_sharded_grading_merges_and_regrades_only_what_changed(tmp_path, capsys):
    masters = write_master(tmp_path / "masters").parent
    (released,) = release_all([masters / MASTER_NAME], tmp_path / "release")
    student = nbformat.read(released, as_version=4)
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, code in (("a", SOLUTION), ("b", WRONG), ("c", SOLUTION)):
        nbformat.write(answer(student, code), subs / f"{name}-{MASTER_NAME}")
    common = ["--masters", str(masters), "--jobs", "2", "--timeout", "60"]
    out = [tmp_path / f"part{k}" / "gradebook.csv" for k in (1, 2)]
    for k in (1, 2):
        args = ["grade", str(subs), "--out", str(out[k - 1]), "--shard", f"{k}/2"]
        assert main([*args, *common]) == 0
    assert len(pd.read_csv(out[0])) == 2 and len(pd.read_csv(out[1])) == 1  # a, c | b
    whole = tmp_path / "whole" / "gradebook.csv"
    assert main(["gradebook", "merge", str(whole), *map(str, out)]) == 0
    book = pd.read_csv(whole).set_index("submission")
    assert (book.total.iloc[0], book.total.iloc[2]) == (5, 5) and book.total.iloc[1] < 5
    assert (whole.parent / "gradebook-report.html").is_file()
    assert main(["gradebook", "merge", str(whole), str(out[0])]) == 2  # a gap
    assert "gap: shard(s) [2]" in capsys.readouterr().err

    # Regrade shard 1 after changing c only: a is reused, c re-run; --force re-runs both.
    nbformat.write(answer(student, WRONG), subs / f"c-{MASTER_NAME}")
    capsys.readouterr()
    assert main(["grade", str(subs), "--out", str(out[0]), "--shard", "1/2", *common]) == 0
    assert "1 unchanged since the last gradebook" in capsys.readouterr().out
    meta, again = read_record(record_path(out[0]))
    assert {s.name: s.results["exercise_1"].score < 5 for s in again} == {
        f"a-{MASTER_NAME[:-6]}": False,
        f"c-{MASTER_NAME[:-6]}": True,
    }
    assert main(["grade", str(subs), "--out", str(out[0]), "--shard", "1/2", "--force",
                 *common]) == 0  # fmt: skip
    assert "unchanged" not in capsys.readouterr().out
