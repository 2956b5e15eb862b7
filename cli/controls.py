"""Control characters shown escaped: names from checkpoints or file systems never drive the terminal.

Apart from :mod:`learnkit.cli.render` so that an error line needs no rich."""

import re

# C0 and C1 controls, DEL, and the bidirectional overrides/isolates that reorder what a terminal shows
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with control characters shown as escapes (``ESC`` -> ``\\x1b``, U+202E ->
    ``\\u202e``), so names from checkpoints or file systems cannot drive the terminal."""
    return _CONTROLS.sub(_escape_one, text)


def _escape_one(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
