"""Learner-controlled text made inert before the grader writes or prints it.

A submission's name is its file or folder name, and messages quote its error text: both are the
learner's. Before they land anywhere:

- :func:`clean_name`: a name taken as bytes (``os.fsencode``), decoded as UTF-8 with
  ``backslashreplace`` (a name that is not UTF-8 shows its bytes as ``\\xNN``), control
  characters (C0, C1, DEL) and bidirectional overrides removed: no ANSI escape reaches a
  terminal, a CSV or a file name;
- :func:`printable`: the same for free text (messages, feedback), keeping newlines and tabs;
- :func:`utf8`: any text as UTF-8 bytes; a lone surrogate (``"\\ud800"``) is written as
  ``\\ud800`` instead of stopping the run;
- :func:`csv_cell` / :func:`csv_text`: a cell that starts with ``=``, ``+``, ``-``, ``@``, tab
  or carriage return is prefixed with ``'`` so a spreadsheet reads it as text, not a formula
  (OWASP, "CSV Injection").
"""

from __future__ import annotations

import os
import re

__all__ = ["clean_name", "printable", "utf8", "csv_cell", "csv_text"]

# C0 and C1 controls, DEL, and the bidirectional embedding/override/isolate characters.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _decoded(text: str | bytes) -> str:
    """Valid Unicode: bytes decoded with backslashreplace; in a str, a file name's byte escape
    (U+DC80..U+DCFF) shown as ``\\xNN`` and any other lone surrogate as ``\\udNNN``."""
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(_surrogate(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _surrogate(char: str) -> str:
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def clean_name(name: str | bytes | os.PathLike) -> str:
    """A submission or file name as plain text: valid UTF-8, no control characters."""
    if isinstance(name, os.PathLike):
        name = os.fsencode(name)
    return _CONTROL.sub("", _decoded(name))


def printable(text) -> str:
    """Free text (a message, feedback) as valid Unicode without control characters but ``\\n``
    and ``\\t``."""
    return _CONTROL_KEEP_LINES.sub("", _decoded(text if isinstance(text, str | bytes) else
                                                str(text)))  # fmt: skip


def utf8(text: str) -> bytes:
    """``text`` as UTF-8 bytes; what cannot be encoded (a lone surrogate) is backslash-escaped."""
    return text.encode("utf-8", "backslashreplace")


def csv_cell(value):
    """A text cell a spreadsheet will not run: formula starts prefixed with ``'`` (OWASP)."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_text(frame, columns=None) -> str:
    """``frame.to_csv(index=False)``, its text ``columns`` (default: all text columns) inert."""
    import pandas as pd

    frame = frame.copy()
    for column in frame.columns if columns is None else columns:
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].map(csv_cell)
    return frame.to_csv(index=False)
