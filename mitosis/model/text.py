"""Text that reaches a terminal or a commit message: which characters are unsafe there, how
they are shown escaped, and names that must not hold them.

Unsafe: the C0 controls (newline, tab, escape, ...), DEL, the C1 controls, the bidirectional
marks, embeddings, overrides and isolates (which reorder what a reader sees: U+061C, U+200E,
U+200F, U+202A to U+202E, U+2066 to U+2069), and lone surrogates (which UTF-8 cannot encode).
A terminal acts on them (an escape sequence can move the cursor, rewrite a line or set the
window's title); a newline in a name would start a new line, or a forged git trailer, in a
commit message.
"""

from __future__ import annotations

import re

from ..exceptions import BadParameter

__all__ = ["UNSAFE", "check_name", "escape", "unsafe_char"]

#: One unsafe character.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


_SHORT = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _kind(char: str) -> str:
    if "\ud800" <= char <= "\udfff":
        return "a lone surrogate"
    return "a control character" if ord(char) < 0xA0 else "a bidirectional control"


def escape(text: str, keep: str = "") -> str:
    r"""``text`` with each unsafe character written as its Python escape, but those in
    ``keep`` (``"\n\t"`` for a block of lines meant to be shown as lines).

    >>> escape("\x1b[31mred\u202e\n", keep="\n")
    '\\x1b[31mred\\u202e\n'
    """
    if not UNSAFE.search(text):
        return text
    return UNSAFE.sub(lambda m: m[0] if m[0] in keep else _escaped(m[0]), text)


def unsafe_char(text: str) -> str | None:
    """The first unsafe character of ``text``, or None."""
    found = UNSAFE.search(text)
    return found[0] if found else None


def check_name(what: str, name: str, fix: str) -> None:
    """Refuse a name (of a parameter, a variant, a step) holding an unsafe character: names are
    one line of printable text, since they go into commit messages and tables.

    Raises:
        BadParameter: naming ``what``, the character, and ``fix``.
    """
    char = unsafe_char(name)
    if char is not None:
        raise BadParameter(
            f"{what} {name!r} holds {_escaped(char)}, {_kind(char)}: a name is one line of "
            f"printable text (it goes into commit messages and tables); {fix}"
        )
