"""Structural checks of generated Verilog text (no simulator)."""

from __future__ import annotations

import re

__all__ = ["self_referential_assigns"]

_ASSIGN = re.compile(r"^\s*assign (.*?) = (.*);\s*$", re.M)
# escaped identifiers run to the next white space; plain ones are words not preceded by a quote
# (which would make them a based constant such as 14'h0f)
_NAME = re.compile(r"(\\\S+|(?<!['\w$])[A-Za-z_][\w$]*)")


def self_referential_assigns(text: str) -> list[str]:
    """``assign`` statements whose left side also appears on their right side.

    Yosys writes such statements when bits of an output port are copies of other bits of the same
    port (a sign extension); Icarus re-evaluates the whole vector on every change and runs up to
    ~100× slower.
    """
    out = []
    for match in _ASSIGN.finditer(text):
        lhs, rhs = match.groups()
        if set(_NAME.findall(lhs)) & set(_NAME.findall(rhs)):
            out.append(match.group(0).strip())
    return out
