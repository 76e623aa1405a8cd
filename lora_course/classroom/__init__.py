"""The classroom: the instructor's tools, one level below the lesson's code.

``release`` (student notebooks from the masters), ``submissions`` (finding and matching a
class's notebooks), ``answers`` (answers out of a kernel as plain data), ``grading`` (the
class run: each submission copied, run and scored), ``execution`` (one notebook in its own
kernel), ``sandbox`` (that kernel in bubblewrap), ``gradebook`` (the CSV,
feedback files and summary), ``review`` (the points a person gives, merged into every output),
``record`` (the full results, shards and merges), ``report`` (the class report), ``lms``
(Canvas, Moodle and Gradescope files), ``gradescope`` (the autograder bundle), ``classgen`` (a
generated class for demonstrations) and ``slides`` (offline reveal.js decks). Below them all:
``results`` (a submission, its runs and the feedback a learner reads), ``files`` (atomic writes,
content hashes) and ``safety`` (learner text made inert). The exercise checks stay in
:mod:`lora_course.checks`, where learners and the grader both find them. The command line
(``python -m lora_course ...``) reaches all of them.

Results flow one way: grading -> record -> gradebook -> the files made from it (report, lms,
review); ``tests/test_import_graph.py`` fails on any module that imports one importing it back.
"""
