"""What counts as a note: one definition of "blank" for the API, the dashboard and the CLI.

A resolution note, a silence comment or a caller's name must show something. White
space, control characters and characters that render as nothing (zero-width
spaces and joiners, bidi marks, variation selectors, Hangul fillers, tag
characters: Unicode's default-ignorable code points) do not. The rule is one
character class, ``VISIBLE_CHAR``: ``is_blank`` searches for it, and
``VISIBLE_TEXT`` (the pattern the API's models and OpenAPI schema carry) requires
it, so the queue, the models and the schema cannot disagree.
"""

from __future__ import annotations

import re

__all__ = ["VISIBLE_CHAR", "VISIBLE_TEXT", "is_blank"]

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt), plus the
# interlinear annotation characters U+FFF9-FFFB: they render as nothing.
_INVISIBLE = (
    r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
#: One character that shows: not white space, not a control, not default-ignorable.
VISIBLE_CHAR = rf"[^\s\x00-\x20\x7f-\xa0{_INVISIBLE}]"
#: Text with at least one visible character and no NUL.
VISIBLE_TEXT = rf"^[^\x00]*{VISIBLE_CHAR}[^\x00]*$"

_VISIBLE = re.compile(VISIBLE_CHAR)


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing (see ``VISIBLE_CHAR``)."""
    return _VISIBLE.search(text) is None
