"""release: solutions and instructor cells out, still runnable, deterministic, bad markers named."""

import nbformat
import pytest
from grading_notebooks import CHECK, MASTER_NAME, SOLUTION, master_notebook, write_master
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from lora_course.classroom.release import (
    CODE_PLACEHOLDER,
    TEXT_PLACEHOLDER,
    MarkerError,
    answer_variables,
    master_notebooks,
    release_all,
    release_notebook,
)


def _sources(nb):
    return [c.source for c in nb.cells]


def test_solution_becomes_placeholder_and_answer_names_become_none():
    student, changed = release_notebook(master_notebook())
    assert changed
    code = student.cells[2].source
    # the answer's placeholder above the marker: code typed at the marker is not overwritten
    assert code == f"rows = []\ntable = None\n{CODE_PLACEHOLDER}\nprint(len(rows))"
    assert "LoRALayer(nn.Linear" not in "".join(_sources(student))


def test_written_answer_and_instructor_cell_removed():
    master = master_notebook()
    student, _ = release_notebook(master)
    text = "\n".join(_sources(student))
    assert "Because r << d" not in text and TEXT_PLACEHOLDER in text
    assert "Instructor" not in text
    assert len(student.cells) == len(master.cells) - 1
    assert student.cells[-2].source == CHECK  # the check call stays


def test_outputs_cleared_and_master_untouched():
    master = master_notebook()
    before = nbformat.writes(master)
    student, _ = release_notebook(master)
    assert all(
        c.outputs == [] and c.execution_count is None for c in student.cells if "outputs" in c
    )
    assert nbformat.writes(master) == before


def test_notebook_without_solutions_keeps_its_outputs():
    cell = new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="1\n")])
    student, changed = release_notebook(new_notebook(cells=[cell]))
    assert not changed and student.cells[0].outputs


def test_solution_tag_replaces_whole_cell():
    nb = new_notebook(
        cells=[
            new_code_cell("table = make()", metadata={"tags": ["solution"]}),
            new_markdown_cell("My answer", metadata={"tags": ["solution"]}),
            new_code_cell(CHECK),
        ]
    )
    student, _ = release_notebook(nb)
    assert _sources(student)[:2] == [f"table = None\n{CODE_PLACEHOLDER}", TEXT_PLACEHOLDER]


def test_one_placeholder_per_answer_and_none_below_the_marker():
    """A cell that sets its answers above the block gets no second `= None` after the marker."""
    source = (
        "table, best = None, None  # yours\n### BEGIN SOLUTION\ntable = make()\nbest = 2.0\n"
        "### END SOLUTION\ntable"
    )
    nb = new_notebook(cells=[new_code_cell(source), new_code_cell(CHECK)])
    student, _ = release_notebook(nb)
    code = student.cells[0].source
    assert code == f"table, best = None, None  # yours\n{CODE_PLACEHOLDER}\ntable"
    typed = code.replace(CODE_PLACEHOLDER, "table = 42")
    namespace = {}
    exec(typed, namespace)
    assert namespace["table"] == 42  # what was typed at the marker is kept


def test_indented_block_stays_valid_python():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
    student, _ = release_notebook(new_notebook(cells=[new_code_cell(source)]))
    code = student.cells[0].source
    assert code == f"def f(x):\n    {CODE_PLACEHOLDER}\n    pass\n"
    compile(code, "cell", "exec")


def test_check_argument_names_are_the_answer_variables():
    nb = new_notebook(cells=[new_code_cell('check("exercise_1", table=my_df)')])
    assert answer_variables(nb) == {"exercise_1": {"table": "my_df"}}


@pytest.mark.parametrize(
    "source, line, says",
    [
        ("x = 1\n### BEGIN SOLUTION\ny = 2\n", 2, "never closed"),
        ("x = 1\n### END SOLUTION\n", 2, "without a"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", 2, "inside the block"),
    ],
)
def test_unbalanced_markers_name_notebook_cell_and_line(source, line, says):
    nb = new_notebook(cells=[new_markdown_cell("title"), new_code_cell(source)])
    with pytest.raises(MarkerError, match=f"bad.ipynb, cell 1, line {line}: .*{says}"):
        release_notebook(nb, "bad.ipynb")


def test_release_all_is_deterministic_and_refuses_before_writing(tmp_path):
    master = write_master(tmp_path / "masters")
    first = release_all([master], tmp_path / "a")
    second = release_all([master], tmp_path / "b")
    assert first[0].read_bytes() == second[0].read_bytes()
    bad = tmp_path / "masters" / "05_bad.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("### BEGIN SOLUTION")]), bad)
    with pytest.raises(MarkerError, match="05_bad.ipynb, cell 0, line 1"):
        release_all(master_notebooks(tmp_path / "masters"), tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_missing_only_keeps_a_learners_edits(tmp_path):
    master = write_master(tmp_path / "masters")
    out = tmp_path / "workspace"
    (target,) = release_all([master], out)
    target.write_text("my edits")
    assert release_all([master], out, missing_only=True) == []
    assert target.read_text() == "my edits"
    target.unlink()
    assert release_all([master], out, missing_only=True) == [target]


def test_a_lettered_notebook_is_a_master_and_is_released(tmp_path):
    masters = tmp_path / "masters"
    masters.mkdir()
    for name in ("02_a.ipynb", "02b_a_in_training.ipynb", "03_b.ipynb"):
        nbformat.write(new_notebook(cells=[new_markdown_cell(f"# {name}")]), masters / name)
    for name in ("02B_upper.ipynb", "2b_one_digit.ipynb", "02bc_two_letters.ipynb", "notes.ipynb"):
        nbformat.write(new_notebook(cells=[new_markdown_cell("not a master")]), masters / name)
    found = master_notebooks(masters)
    assert [p.name for p in found] == ["02_a.ipynb", "02b_a_in_training.ipynb", "03_b.ipynb"]
    released = release_all(found, tmp_path / "release")
    assert (tmp_path / "release" / "02b_a_in_training.ipynb") in released


def test_the_course_masters_release(tmp_path):
    masters = master_notebooks("notebooks")
    assert masters, "no master notebooks found"
    assert "02b_rank_and_alpha_in_training.ipynb" in [p.name for p in masters]
    assert len(release_all(masters, tmp_path)) == len(masters)


@pytest.mark.slow
def test_released_notebook_runs_top_to_bottom_and_says_not_attempted(tmp_path):
    from nbclient import NotebookClient

    (student,) = release_all([write_master(tmp_path / "m")], tmp_path / "out")
    nb = nbformat.read(student, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()  # raises on any error
    text = "".join(o.get("text", "") + str(o.get("data", "")) for o in nb.cells[3].outputs)
    assert "exercise_1: not attempted" in text
    assert SOLUTION not in nbformat.writes(nb) and MASTER_NAME == student.name
