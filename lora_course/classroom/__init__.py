"""The classroom: the instructor's tools, one level below the lesson's code.

``release`` (student notebooks from the masters), ``submissions`` (finding and matching a
class's notebooks), ``answers`` (answers out of a kernel as plain data), ``grading`` (each
submission in its own kernel), ``sandbox`` (that kernel in bubblewrap), ``gradebook`` (the CSV,
feedback and summary), ``review`` (the points a person gives, merged into every output),
``record`` (the full results, content hashes, shards and merges),
``report`` (the class report), ``lms`` (Canvas, Moodle and Gradescope files), ``gradescope``
(the autograder bundle), ``classgen`` (a generated class for demonstrations) and ``slides``
(offline reveal.js decks). The exercise checks stay in :mod:`lora_course.checks`, where learners
and the grader both find them. The command line (``python -m lora_course ...``) reaches all of
them.
"""
