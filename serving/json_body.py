"""Request bodies parsed as JSON that no body can turn into a crash, a stall or a silent NaN.

Python's json recurses once per nesting level (100,000 brackets raise RecursionError), parses an
integer of any length in quadratic time up to its 4,300-digit limit, and reads NaN and Infinity, which
are not JSON. So the depth is measured before parsing, and integers longer than `max_digits` and the
NaN/Infinity literals become a 400 that names where in the body they were.

>>> parse_json(b'{"key": "k", "features": {"x1": 0.5}}', max_depth=8, max_digits=20)
{'key': 'k', 'features': {'x1': 0.5}}
>>> parse_json(b'[[[1]]]', max_depth=2, max_digits=20)
Traceback (most recent call last):
...
serving.requests.BadRequest: body is nested 3 deep, over the limit of 2 (serving.max_json_depth)
>>> parse_json(b'{"features": {"x1": NaN}}', max_depth=8, max_digits=20)
Traceback (most recent call last):
...
serving.requests.BadRequest: 'features.x1' is NaN, which is not a JSON number
>>> parse_json(b'{"x1": NaN, ', max_depth=8, max_digits=20)  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
serving.requests.BadRequest: body is not valid JSON: Expecting property name enclosed in double quotes:
line 1 column 13 (char 12)
>>> parse_json(b'{"requests": [{"n": 1234567}]}', max_depth=8, max_digits=5)
Traceback (most recent call last):
...
serving.requests.BadRequest: 'requests[0].n' is an integer of 7 digits, over the limit of 5 (serving.max_json_digits)
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import re

from serving.requests import BadRequest

# A JSON string, escapes included: brackets inside one do not nest anything.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# Opening brackets become 2, closing ones 0, everything else is deleted: see nesting_depth.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


def nesting_depth(raw: bytes, limit: int) -> int:
    """How deep brackets nest in `raw`, outside strings; exact whenever it is over `limit`.

    >>> nesting_depth(b'{"a": [1, {"b": "[[[["}]}', limit=1)
    3
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the usual small body: no scan needed
        return min(limit, raw.count(b"[") + raw.count(b"{"))
    steps = _STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    # After i brackets of which o opened, the depth is o - (i - o) = (sum of the 2s so far) - i; all in C.
    return max(map(operator.sub, itertools.accumulate(steps), itertools.count(1)), default=0)


class _Refused:
    """What a refused literal parses to on the second, slower parse, so that a walk can say where it was."""

    def __init__(self, message: str):
        self.message = message


class _RefusedLiteral(Exception):
    """Raised by the first parse's hooks: a refused literal is somewhere in the body."""


def _path(parent: str, child) -> str:
    return f"{parent}[{child}]" if isinstance(child, int) else f"{parent}.{child}" if parent else str(child)


def _find_refused(value, path: str = ""):
    if isinstance(value, _Refused):
        return path, value
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for child, item in children:
        found = _find_refused(item, _path(path, child))
        if found:
            return found
    return None


def _literal_checks(max_digits: int, refuse):
    """parse_int and parse_constant hooks that hand integers longer than `max_digits` and NaN/Infinity to
    `refuse(message)`."""

    def parse_int(digits: str):
        length = len(digits.lstrip("-"))
        if length <= max_digits:
            return int(digits)
        return refuse(f"is an integer of {length} digits, over the limit of {max_digits} (serving.max_json_digits)")

    return {"parse_int": parse_int, "parse_constant": lambda name: refuse(f"is {name}, which is not a JSON number")}


def _raise(message: str):
    raise _RefusedLiteral(message)


@functools.lru_cache(maxsize=8)
def _decoder(max_digits: int) -> json.JSONDecoder:
    """One decoder per digits limit, built once: building one per request costs more than parsing it."""
    return json.JSONDecoder(**_literal_checks(max_digits, _raise))


def parse_json(raw: bytes, max_depth: int, max_digits: int):
    """The JSON value of a UTF-8 body; BadRequest naming the problem (and its field) otherwise."""
    depth = nesting_depth(raw, max_depth)
    if depth > max_depth:
        raise BadRequest(f"body is nested {depth} deep, over the limit of {max_depth} (serving.max_json_depth)")
    try:
        text = raw.decode("utf-8") or "null"
    except UnicodeDecodeError as e:
        raise BadRequest(f"body is not UTF-8: {e}") from None
    try:
        return _decoder(max_digits).decode(text)
    except _RefusedLiteral:
        pass
    except ValueError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    try:  # again, with the refused literals as markers, to name the first one's field
        value = json.loads(text, **_literal_checks(max_digits, _Refused))
    except ValueError as e:  # broken after the literal
        raise BadRequest(f"body is not valid JSON: {e}") from None
    path, literal = _find_refused(value)
    raise BadRequest(f"'{path or 'body'}' {literal.message}")
