"""Parsing ``-p`` / ``-e`` options into the grid of trials that ``mitosis run`` runs."""

from __future__ import annotations

import ast
import builtins
import itertools
from collections.abc import Sequence
from typing import Any

from .. import literal
from ..model.layout import split_qualified
from ..run.experiment import Chain, table_of
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


def unprefixed(options: Sequence[str], module: str) -> tuple[str, ...]:
    """``-p``/``-e`` options given with ``-m MODULE``, where mitosis 0.6 took
    ``MODULE.name=value`` as ``name=value``: that prefix removed."""
    prefixes = (module + ".", module.replace(":", ".") + ".")
    found = []
    for option in options:
        plus = "+" if option.startswith("+") else ""
        body = option[len(plus) :]
        for prefix in prefixes:
            if body.startswith(prefix):
                body = body[len(prefix) :]
                break
        found.append(plus + body)
    return tuple(found)


def evaluate(name: str, text: str, allow_code: bool) -> Any:
    """The value of ``-e name=text``: a Python literal (Python code with ``allow_code``)."""
    try:
        if allow_code:
            return eval(text, {"__builtins__": builtins})  # the user opted in to code
        return ast.literal_eval(text)
    except Exception as exc:
        if allow_code:
            fail(f"-e {name}={text}: {type(exc).__name__}: {exc}")
        if text.isidentifier():  # a bare word: meant as a string, or as a variant's name
            fail(
                f"-e {name}={text}: {text} is not a Python literal. For the string {text!r}, "
                f"quote it inside the shell's quotes: -e \"{name}='{text}'\"; for the variant "
                f"named {text}, use -p {name}={text}"
            )
        fail(
            f"-e {name}={text}: {text} is not a Python literal (a number, a 'quoted string', a "
            "list, a dict...); quote the whole option for the shell, or pass --allow-code to "
            "evaluate Python code"
        )


def _value(value: Any) -> Any:
    """An ``-e`` value as the library takes it: a string is a literal, never a variant name."""
    return literal(value) if isinstance(value, str) else value


def grid(
    chain: Chain, params: Sequence[str], evals: Sequence[str], allow_code: bool
) -> tuple[list[dict[str, Any]], set[str]]:
    """Every combination of the given values, and the names marked untracked."""
    choices: dict[str, list[Any]] = {}
    untracked: set[str] = set()
    given: dict[str, tuple[str, str]] = {}

    def once(full: str, flag: str, text: str) -> None:
        if full in given:
            first, before = given[full]
            fail(
                f"{flag} {full}={text}: {full} is given twice (also {first} {full}={before}); "
                f"give it once, with several values as a comma list: {flag} {full}={before},{text}"
            )
        given[full] = (flag, text)

    for full, index, name, text, plus in parse_assignments(params, "-p", chain):
        once(full, "-p", text)
        lookup = chain.steps[index].spec.lookup
        if table_of(lookup, name) is None:  # any mapping: a defaultdict may answer every name
            tables = ", ".join(sorted(map(str, lookup))) or "none"
            fail(
                f"-p {full}={text}: {name!r} has no lookup table in "
                f"{chain.steps[index].name!r} (tables: {tables}); give its value with "
                f"-e {full}={text}"
            )
        choices[full] = split_top_level(text)
        if plus:
            untracked.add(full)
    for full, _, _, text, plus in parse_assignments(evals, "-e", chain):
        once(full, "-e", text)
        choices[full] = [
            _value(evaluate(full, piece, allow_code)) for piece in split_top_level(text)
        ]
        if plus:
            untracked.add(full)
    names = list(choices)
    combos = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*choices.values())
    ]
    return combos, untracked
