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

__all__ = ["format_java", "parse_java_pattern"]

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
