"""Java ``DateTimeFormatter`` patterns (as Amoro's properties use them) applied to Python datetimes.

Supported letters: ``y`` (year; ``yy`` = two digits), ``M`` (month), ``d`` (day of month),
``H`` (hour 0-23), ``m`` (minute), ``s`` (second), ``S`` (fraction of second, as many digits as
letters). A run of the same letter pads with zeros to its length, as in Java. Text in single quotes
is literal (``''`` is one quote); any other character that is not a letter is literal too, so
``'tag-'yyyyMMdd`` gives ``tag-20240131`` and ``yyyy-MM-dd HH:mm:ss`` gives ``2024-01-31 08:05:00``.
"""

from __future__ import annotations

import datetime as dt

from airflow_provider_amoro.optimizing.config import InvalidPropertyError

__all__ = ["check_sorts_as_text", "format_java", "parse_java_pattern"]

_LETTERS = set("yMdHmsS")
Token = tuple[str, str | int]  # ("lit", text) or (letter, width)


def parse_java_pattern(name: str, pattern: str) -> list[Token]:
    """Tokenize a Java date pattern.

    Args:
        name: property name, for errors.
        pattern: the pattern, e.g. ``'tag-'yyyyMMdd``.

    Returns:
        Tokens: ``("lit", text)`` for literal text, ``(letter, width)`` for a field.

    Raises:
        InvalidPropertyError: on an unsupported letter or an unclosed quote.
    """
    tokens: list[Token] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                tokens.append(("lit", "'"))
                i += 2
                continue
            end = i + 1
            text = []
            while True:
                if end >= n:
                    raise InvalidPropertyError(name, pattern, "unclosed quote in date pattern")
                if pattern[end] == "'":
                    if end + 1 < n and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            tokens.append(("lit", "".join(text)))
            i = end + 1
        elif ch.isalpha():
            if ch not in _LETTERS:
                raise InvalidPropertyError(
                    name,
                    pattern,
                    f"unsupported pattern letter {ch!r} (use y M d H m s S, 'text')",
                )
            j = i
            while j < n and pattern[j] == ch:
                j += 1
            tokens.append((ch, j - i))
            i = j
        else:
            tokens.append(("lit", ch))
            i += 1
    if not any(kind != "lit" for kind, _ in tokens):
        raise InvalidPropertyError(name, pattern, "date pattern has no date or time field")
    return tokens


_SIGNIFICANCE = "yMdHmsS"
_FIXED_WIDTH = {"M": 2, "d": 2, "H": 2, "m": 2, "s": 2}


def check_sorts_as_text(name: str, pattern: str) -> None:
    """Refuse a pattern whose formatted values do not sort as text in time order.

    Such values can only be compared as text (a file's upper bound is the text maximum), so the
    fields must run from the most significant down without gaps (``y``, ``M``, ``d``, ``H``,
    ``m``, ``s``, ``S``), each zero-padded to a fixed width (``yyyy``, ``MM``, ``dd``, ``HH``,
    ``mm``, ``ss``); literal text may sit anywhere. ``yyyy-MM-dd``, ``yyyyMMddHH`` and
    ``'p='yyyy-MM`` sort; ``dd-MM-yyyy``, ``yy-MM-dd`` and ``yyyy-M-d`` do not.

    Raises:
        InvalidPropertyError: naming the property, the pattern and what is wrong.
    """
    fields = [(str(kind), int(width)) for kind, width in parse_java_pattern(name, pattern) if kind != "lit"]
    letters = "".join(kind for kind, _ in fields)
    hint = "use fields from the year down, zero-padded, e.g. yyyy-MM-dd or yyyy-MM-dd HH:mm:ss"
    if letters != _SIGNIFICANCE[: len(letters)]:
        raise InvalidPropertyError(
            name,
            pattern,
            f"values of this pattern do not sort as text in time order (fields {letters!r}); {hint}",
        )
    for kind, width in fields:
        if (kind == "y" and width < 4) or width < _FIXED_WIDTH.get(kind, 0):
            raise InvalidPropertyError(
                name,
                pattern,
                f"{kind * width!r} is not fixed-width, so values do not sort as text; {hint}",
            )


def format_java(value: dt.datetime, name: str, pattern: str) -> str:
    """Format ``value`` with a Java date pattern.

    Args:
        value: the datetime (its own fields are used as they are; convert time zones first).
        name: property name, for errors.
        pattern: the Java pattern.

    Returns:
        The formatted text.
    """
    out: list[str] = []
    for kind, arg in parse_java_pattern(name, pattern):
        if kind == "lit":
            out.append(str(arg))
            continue
        width = int(arg)
        if kind == "y":
            out.append(f"{value.year % 100:02d}" if width == 2 else f"{value.year:0{width}d}")
        elif kind == "S":
            out.append(f"{value.microsecond:06d}"[:width].ljust(width, "0"))
        else:
            number = {
                "M": value.month,
                "d": value.day,
                "H": value.hour,
                "m": value.minute,
                "s": value.second,
            }[kind]
            out.append(f"{number:0{width}d}")
    return "".join(out)
