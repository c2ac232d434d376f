"""Parsing ``-p`` / ``-e`` options into the grid of trials that ``mitosis run`` runs."""

from __future__ import annotations

import ast
import builtins
import itertools
from collections.abc import Sequence
from typing import Any

from ..model.layout import split_qualified
from ..run.experiment import Chain
from .support import fail


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``1,(2,3),'a,b'`` -> 3 pieces."""
    pieces, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces]


def parse_assignments(
    options: Sequence[str], flag: str, chain: Chain
) -> list[tuple[str, int, str, str, bool]]:
    """``[+][step.]name=value`` options as ``(full name, step index, name, value text,
    untracked)``; the full name is ``name``, or ``step.name`` in a chain."""
    steps = [s.name for s in chain.steps]
    parsed = []
    for option in options:
        name, eq, value = option.partition("=")
        untracked = name.startswith("+")
        name = name.lstrip("+").strip()
        if not eq or not name:
            fail(f"{flag} {option!r}: write it as {flag} [+]name=value")
        step, arg = split_qualified(name)
        if step is None and not chain.single:
            fail(
                f"{flag} {option!r}: in the chain {' -> '.join(steps)}, address the parameter "
                f"as step.name (e.g. {flag} {steps[-1]}.{name}={value})"
            )
        if step is not None and step not in (steps if not chain.single else [steps[0], chain.name]):
            fail(
                f"{flag} {option!r} addresses step {step!r}, which is not in the experiment "
                f"{chain.name!r} (steps: {', '.join(steps)}); write {flag} {steps[-1]}.{arg}=..."
            )
        index = steps.index(step) if step is not None and not chain.single else 0
        parsed.append((chain.name_of(index, arg), index, arg, value, untracked))
    return parsed


def evaluate(name: str, text: str, allow_code: bool) -> Any:
    try:
        if allow_code:
            return eval(text, {"__builtins__": builtins})  # the user opted in to code
        return ast.literal_eval(text)
    except Exception as exc:
        hint = "" if allow_code else " (a number, a 'quoted string', a list, a dict...)"
        opt_in = "" if allow_code else ", or pass --allow-code to evaluate Python code"
        fail(f"-e {name}={text}: {type(exc).__name__}: {exc}. Give a Python literal{hint}{opt_in}")


def grid(
    chain: Chain, params: Sequence[str], evals: Sequence[str], allow_code: bool
) -> tuple[list[dict[str, Any]], set[str]]:
    """Every combination of the given values, and the names marked untracked."""
    choices: dict[str, list[Any]] = {}
    untracked: set[str] = set()
    for full, index, name, text, plus in parse_assignments(params, "-p", chain):
        lookup = chain.steps[index].spec.lookup
        if name not in lookup:
            tables = ", ".join(sorted(lookup)) or "none"
            fail(
                f"-p {full}={text}: {name!r} has no lookup table in "
                f"{chain.steps[index].name!r} (tables: {tables}); give its value with "
                f"-e {full}={text}"
            )
        choices[full] = split_top_level(text)
        if plus:
            untracked.add(full)
    for full, _, _, text, plus in parse_assignments(evals, "-e", chain):
        choices[full] = [evaluate(full, piece, allow_code) for piece in split_top_level(text)]
        if plus:
            untracked.add(full)
    names = list(choices)
    combos = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*choices.values())
    ]
    return combos, untracked
