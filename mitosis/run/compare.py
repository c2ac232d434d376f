"""What differs between two trials: parameters, results, code, interpreter, platform, packages.

Reads JSON and text only (nothing is unpickled).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import attrs

from ..exceptions import StoreError
from ..model.layout import CODE_DIFF, ENVIRONMENT, REQUIREMENTS
from ..model.records import Param, Trial
from ..model.values import dumps_json
from ..store.trials import load_json

__all__ = ["Difference", "diff_trials", "packages", "recorded_environment"]


@attrs.frozen
class Difference:
    """One thing that differs: in which section, what, and its two sides (None: absent)."""

    section: str
    key: str
    a: str | None
    b: str | None


def packages(requirements: str) -> dict[str, str]:
    """Distribution name to how it is installed (``==1.2``, ``editable file:///...``, a URL),
    parsed with pip-requirements-parser."""
    from pip_requirements_parser import RequirementsFile

    # RequirementsFile.from_string is broken in 32.0.1 (NameError), so go through a file.
    fd, path = tempfile.mkstemp(suffix=".txt", prefix="mitosis-requirements-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(requirements)
        parsed = RequirementsFile.from_file(path)
    finally:
        os.unlink(path)
    found: dict[str, str] = {}
    for req in parsed.requirements:
        if not req.name:
            continue
        if req.is_editable:
            how = f"editable {req.link.url.split('#')[0]}"
        elif req.link is not None:
            how = f"@ {req.link.url}"
        else:
            how = str(req.specifier) or "(any version)"
        found[req.name.lower()] = how
    return found


def _param_text(param: Param | None) -> str | None:
    if param is None:
        return None
    if param.source == "variant":
        shown = dumps_json(param.value) if param.dill is None else f"a pickled {param.type}"
        return f"{param.variant} ({shown})"
    return param.variant


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else dumps_json(value)


def _pairs(section: str, a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    return [
        Difference(section, key, a.get(key), b.get(key))
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def _read_text(trial: Trial, name: str) -> str:
    try:
        return trial.read(name).decode("utf-8", "replace")
    except StoreError:
        return ""


def _lines(trial: Trial, name: str) -> tuple[int, str]:
    """How many lines a file of the trial has, and a digest of its bytes (``(0, "")`` when
    it has none), read as it goes: a diff of any size is never held whole."""
    lines, digest, last = 0, hashlib.sha256(), b""
    try:
        with trial.open(name) as file:
            while chunk := file.read(1 << 20):
                lines, last = lines + chunk.count(b"\n"), chunk[-1:]
                digest.update(chunk)
    except StoreError:
        pass
    if not last:  # none, or empty: as no uncommitted changes
        return 0, ""
    return lines + (last != b"\n"), digest.hexdigest()


def recorded_environment(trial: Trial) -> dict[str, Any]:
    """The trial's ``environment.json`` (empty when it recorded none).

    Raises:
        StoreError: it is not a JSON object (mitosis did not write it).
    """
    text = _read_text(trial, ENVIRONMENT)
    where = f"{ENVIRONMENT} of trial {trial.id}"
    env = load_json(text.encode(), where) if text else {}
    if not isinstance(env, dict):
        raise StoreError(
            f"{where} is not a JSON object but a {type(env).__name__}: mitosis did not write it "
            "(a damaged or forged record, maybe from a pull); do not trust this trial"
        )
    return env


def diff_trials(a: Trial, b: Trial) -> list[Difference]:
    """Everything that differs between trials ``a`` and ``b``, section by section."""
    found: list[Difference] = []
    found += _pairs("experiment", {"name": a.experiment}, {"name": b.experiment})
    for section, left, right in (
        ("parameters", a.params, b.params),
        ("untracked", a.untracked, b.untracked),
    ):
        found += _pairs(
            section,
            {k: _param_text(v) for k, v in left.items()},
            {k: _param_text(v) for k, v in right.items()},
        )
    found += _pairs(
        "results",
        {"status": a.status, "main": _text(a.main), **{k: _text(v) for k, v in a.metrics.items()}},
        {"status": b.status, "main": _text(b.main), **{k: _text(v) for k, v in b.metrics.items()}},
    )
    code_a, code_b = a.code, b.code
    found += _pairs(
        "code",
        {"commit": code_a.commit, "branch": code_a.branch, "dirty": str(code_a.dirty)}
        if code_a
        else {},
        {"commit": code_b.commit, "branch": code_b.branch, "dirty": str(code_b.dirty)}
        if code_b
        else {},
    )
    diff_a, diff_b = _lines(a, CODE_DIFF), _lines(b, CODE_DIFF)
    if diff_a != diff_b:
        found.append(
            Difference(
                "code",
                "uncommitted diff",
                f"{diff_a[0]} lines" if diff_a[0] else None,
                f"{diff_b[0]} lines" if diff_b[0] else None,
            )
        )
    env_a, env_b = recorded_environment(a), recorded_environment(b)
    keys = ("python", "implementation", "platform", "machine", "host", "executable")
    found += _pairs(
        "environment",
        {k: _text(env_a[k]) for k in keys if k in env_a},
        {k: _text(env_b[k]) for k in keys if k in env_b},
    )
    found += _pairs(
        "packages",
        packages(_read_text(a, REQUIREMENTS)),
        packages(_read_text(b, REQUIREMENTS)),
    )
    return found
