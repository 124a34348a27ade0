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
>>> parse_json(b'{"requests": [{"n": 1234567}]}', max_depth=8, max_digits=5)
Traceback (most recent call last):
...
serving.requests.BadRequest: 'requests[0].n' is an integer of 7 digits, over the limit of 5 (serving.max_json_digits)
"""

from __future__ import annotations

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
    """What a refused literal parses to, so that the walk afterwards can say where it was."""

    def __init__(self, message: str):
        self.message = message


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


def parse_json(raw: bytes, max_depth: int, max_digits: int):
    """The JSON value of a UTF-8 body; BadRequest naming the problem (and its field) otherwise."""
    depth = nesting_depth(raw, max_depth)
    if depth > max_depth:
        raise BadRequest(f"body is nested {depth} deep, over the limit of {max_depth} (serving.max_json_depth)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"body is not UTF-8: {e}") from None
    refused = []

    def parse_int(digits: str):
        if len(digits.lstrip("-")) <= max_digits:
            return int(digits)
        refused.append(True)
        return _Refused(f"is an integer of {len(digits.lstrip('-'))} digits, over the limit of {max_digits} "
                        f"(serving.max_json_digits)")

    def parse_constant(name: str):
        refused.append(True)
        return _Refused(f"is {name}, which is not a JSON number")

    try:
        value = json.loads(text or "null", parse_int=parse_int, parse_constant=parse_constant)
    except ValueError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    if refused:
        path, literal = _find_refused(value)
        raise BadRequest(f"'{path or 'body'}' {literal.message}")
    return value
