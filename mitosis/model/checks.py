"""The validation layer: what comes from a store is checked here before anything uses it.

A store may hold a collaborator's branches, a bundle or a remote's history, so every tree entry
name, every path that names a file and every record field is untrusted input until checked:

- :func:`path_problem` / :func:`name_problem`: a path (``a/b/c``) or one tree entry name is
  relative, has no ``..``, ``.`` or empty part, no NUL, no ``.git`` (as ``git fsck`` refuses);
- :func:`check_record`: a ``trial.json`` record has every field of the right type and range,
  and its id and experiment match where it sits in the tree (``trials/<id[:2]>/<id>`` on
  ``mitosis/<experiment>``);
- :func:`experiment_problem`: a branch name is one mitosis can read and write;
- :func:`nesting_problem`: parsed JSON nests no deeper than :data:`NESTING` (what reads it
  may recurse);
- :func:`lock_problem`: a variant lock file, or a rename's note, has its fields' types and sits
  where its parameter and variant name say.

Nothing here does I/O; what reads the store (``mitosis.store``) calls it, and a record that
fails is reported in one line naming the trial, the branch and the field, and skipped.
"""

from __future__ import annotations

import re
import sys
from typing import Any, NoReturn

from ..exceptions import BadRecord
from .layout import alias_path, figure_name, result_name, variant_path
from .text import escape, unsafe_char
from .values import tagged, undecodable

__all__ = [
    "NESTING",
    "STATUSES",
    "STEP_STATUSES",
    "VALUE_SOURCES",
    "check_record",
    "experiment_problem",
    "lock_problem",
    "name_problem",
    "nesting_problem",
    "path_problem",
    "printable_problem",
]

STATUSES = ("ok", "failed", "killed", "interrupted")
STEP_STATUSES = (*STATUSES, "not run")
VALUE_SOURCES = ("variant", "literal", "default")
_HEX_ID = re.compile(r"[0-9a-f]{4,64}")
_DRIVE = re.compile(r"[A-Za-z]:")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: Code points that HFS+ ignores in a name (git's ``is_hfs_dotgit`` drops them, then compares).
_HFS_IGNORED = dict.fromkeys(
    [0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)
#: ``.git`` as NTFS reads a name: its short name ``git~1``, trailing dots and spaces ignored, a
#: ``:stream`` after it (git's ``is_ntfs_dotgit``).
_NTFS_DOTGIT = re.compile(r"(?:\.git|git~1)[. ]*(?::.*)?", re.IGNORECASE | re.DOTALL)
# What git refuses in one component of a ref name (git check-ref-format), and "/": an
# experiment's branch is exactly one component under refs/heads/mitosis/.
_REF_REFUSED = re.compile(r"[\x00-\x20\x7f~^:?*\[\\/]|\.\.|@\{")


def name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as one entry of a tree, a file or folder name, or None."""
    if name in ("", ".", ".."):
        return f"the name {name!r} is not a file name"
    if "/" in name or "\\" in name or "\x00" in name:
        return f"the name {name!r} holds a path separator or NUL"
    if name.translate(_HFS_IGNORED).lower() == ".git" or _NTFS_DOTGIT.fullmatch(name):
        return f"the name {name!r} is .git on some file system (git fsck refuses it too)"
    return None


def path_problem(path: str) -> str | None:
    """What is wrong with ``path`` as a relative path inside a folder, or None."""
    if not isinstance(path, str) or not path:
        return f"the path {path!r} is not a relative path"
    if path.startswith("/") or _DRIVE.match(path):
        return f"the path {path!r} is absolute"
    for part in path.split("/"):
        problem = name_problem(part)
        if problem is not None:
            return f"the path {path!r}: {problem}"
    return None


def printable_problem(text: str, what: str) -> str | None:
    """What is wrong with ``text`` as a one-line name (no control characters), or None."""
    found = unsafe_char(text)
    if found is None:
        return None
    return f"{what} {escape(text)!r} holds the unsafe character {escape(found)!r}"


def experiment_problem(name: str) -> str | None:
    """What is wrong with ``name`` as an experiment's name (and so its branch's), or None."""
    if (
        not isinstance(name, str)
        or not name
        or _REF_REFUSED.search(name)
        or unsafe_char(name)
        or name.startswith(".")
        or name.endswith((".", ".lock"))
        or name == "@"
    ):
        return (
            f"experiment name {name!r} cannot name a git branch; use letters, digits, "
            "'-', '_', '+' and '.' (no spaces, '/', '..', '~', '^', ':' or trailing '.lock')"
        )
    return None


def lock_problem(raw: Any, path: str) -> str | None:
    """What is wrong with ``raw`` (parsed JSON) as the variant lock file at ``path``
    (``variants/<param>/<variant>.json``: ``param``, ``variant``, ``type`` and ``fingerprint``
    text, ``dill`` a file name or null, and a ``value``), or as a rename's note there
    (``variants/<param>/<old>.renamed/<fp>.json``: ``param``, ``variant`` (the old name),
    ``renamed_to`` (a name) and ``fingerprint``), or None.

    A lock or a note sits where its own fields say (the file of its parameter, variant name and,
    for a note, fingerprint), so that one file cannot speak for another name.
    """
    if not isinstance(raw, dict):
        return f"it must map fields to values, not be a {type(raw).__name__}"
    note = ".renamed/" in path
    fields = ("param", "variant", "fingerprint", "renamed_to" if note else "type")
    for field in fields:
        if not isinstance(raw.get(field), str):
            return f"field {field!r} must be text, not {type(raw.get(field)).__name__}"
    if note:
        problem = printable_problem(raw["renamed_to"], "the new name") or name_problem(
            raw["renamed_to"]
        )
        if problem is not None:
            return f"field 'renamed_to': {problem}"
        place = alias_path(variant_path(raw["param"], raw["variant"]), raw["fingerprint"])
    else:
        if "value" not in raw:
            return "field 'value' is missing"
        if raw.get("dill") is not None and not isinstance(raw["dill"], str):
            return f"field 'dill' must be a file name or null, not {type(raw['dill']).__name__}"
        place = variant_path(raw["param"], raw["variant"]) + ".json"
    if place != path:
        return (
            f"it names {raw['param']}={raw['variant']!r}, whose "
            f"{'note' if note else 'lock'} is {place}, not {path}"
        )
    return None


#: How deep the JSON of a store may nest its lists and objects: what reads records (decoding
#: tags, making a site's data, printing) recurses into them.
NESTING = 100
#: Fewer brackets than this cannot nest deeper than :data:`NESTING`: most files need no walk.
_FEW_BRACKETS = NESTING


def nesting_problem(data: bytes, parsed: Any) -> str | None:
    """What is wrong with how deep ``parsed`` (the JSON of ``data``) nests, or None."""
    if data.count(b"[") + data.count(b"{") < _FEW_BRACKETS:
        return None
    level: list[tuple[Any, int]] = [(parsed, 1)]
    while level:
        value, depth = level.pop()
        if depth > NESTING:
            return f"it nests lists and objects more than {NESTING} deep"
        if isinstance(value, dict):
            level.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            level.extend((v, depth + 1) for v in value)
    return None


#: Names and paths seen to pass their checks: records of one experiment repeat the same
#: parameter names and file paths thousands of times, and a listing checks them all.
_SOUND_NAMES: set[str] = set()
_SOUND_PATHS: set[str] = set()
_SOUND_COMMITS: set[str] = set()
_SOUND_STEPS: set[str] = set()
_SOUND_MOST = 4096  # either set starts anew past this many


def _sound(seen: set[str], value: str) -> None:
    if len(seen) >= _SOUND_MOST:
        seen.clear()
    seen.add(value)


def _seconds(value: Any) -> bool:
    """Whether ``value`` is a number of seconds: not negative, and finite as a float (an
    integer too big for one is not: no NaN, no infinity, and none that printing would raise)."""
    return type(value) in (float, int) and 0 <= value <= sys.float_info.max


class _Checker:
    """Checks one record's fields; the first problem raises :class:`BadRecord`.

    A field's name is passed in parts (``field``, ``suffix``) and joined only to report a
    problem: a listing checks thousands of records, nearly all of them sound. The record is
    parsed JSON, whose objects' keys are always text."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, problem: str) -> NoReturn:
        raise BadRecord(f"{self.where} is not a readable trial record: field {field!r} {problem}")

    def text(self, value: Any, field: str, suffix: str = "", *, optional: bool = False) -> None:
        if isinstance(value, str) or (value is None and optional):
            return
        self.fail(field + suffix, f"must be text, not {type(value).__name__}")

    def number(self, value: Any, field: str, suffix: str = "") -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field + suffix, f"must be a number, not {type(value).__name__}")
        if not _seconds(value):
            self.fail(field + suffix, f"must be a finite number of seconds, not {value!r}")

    def mapping(self, value: Any, field: str, suffix: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field + suffix, "must map names (text) to values")
        return value

    def has(self, value: dict[str, Any], field: str, *keys: str) -> None:
        """Every key of ``keys`` is in ``value`` (null or not: what a record is read into needs
        the field)."""
        for key in keys:
            if key not in value:
                self.fail(f"{field}.{key}", "is missing")

    def choice(self, value: Any, field: str, allowed: tuple[str, ...], suffix: str = "") -> None:
        if value not in allowed:
            self.fail(field + suffix, f"must be one of {', '.join(allowed)}, not {value!r}")

    def path(self, value: Any, field: str) -> None:
        if type(value) is str and value in _SOUND_PATHS:
            return
        self.text(value, field)
        # the files of a record are named after printable names; a lone surrogate cannot even
        # be looked up in a tree (UTF-8 cannot encode it)
        problem = path_problem(value) or printable_problem(value, "the path")
        if problem is not None:
            self.fail(field, problem)
        _sound(_SOUND_PATHS, value)

    def paths(self, value: Any, field: str) -> None:
        if not isinstance(value, list):
            self.fail(field, f"must be a list of paths, not {type(value).__name__}")
        for n, path in enumerate(value):
            if type(path) is not str or path not in _SOUND_PATHS:
                self.path(path, f"{field}[{n}]")

    def name(self, name: str, field: str) -> None:
        if name in _SOUND_NAMES:
            return
        problem = name_problem(name) or printable_problem(name, "the name")
        if problem is not None:
            self.fail(field, f"holds a parameter name that is no name: {problem}")
        _sound(_SOUND_NAMES, name)

    def results(self, holder: dict[str, Any], field: str) -> None:
        """The tags of ``main`` and ``metrics`` of ``holder`` (a record or a step) decode:
        readers decode what may hold one (see :func:`~mitosis.model.values.tagged`)."""
        for key in ("main", "metrics"):
            value = holder.get(key)
            if tagged(value):
                self.decodes(value, field + key)

    def decodes(self, value: Any, field: str) -> None:
        problem = undecodable(value)
        if problem is not None:
            self.fail(field, problem)

    def param(self, value: Any, kind: str, name: str) -> None:
        held = value.get("value") if type(value) is dict and not value.get("dill") else None
        if type(held) in (dict, list):  # decoded when asked for (with dill: unpickled instead)
            self.decodes(held, f"{kind}.{name}.value")
        if (  # the usual parameter, at a glance; else each of its fields in turn
            type(value) is dict
            and type(value.get("variant")) is str
            and value.get("source") in VALUE_SOURCES
            and type(value.get("type")) is str
            and type(value.get("fingerprint")) is str
            and "value" in value
            and value.get("dill") is None
        ):
            return
        field = f"{kind}.{name}"
        param = self.mapping(value, field)
        get = param.get
        self.text(get("variant"), field, ".variant")
        self.choice(get("source"), field, VALUE_SOURCES, ".source")
        self.text(get("type"), field, ".type")
        self.text(get("fingerprint"), field, ".fingerprint")
        if "value" not in param:
            self.fail(field + ".value", "is missing")
        if get("dill") is not None:
            self.path(param["dill"], f"{field}.dill")

    def step_name(self, name: str, field: str) -> None:
        """A step's name makes the names of its files (``results/<step>.dill``): a rerun
        writes them, so ``../x`` would put ``..`` in the store's own tree."""
        problem = printable_problem(name, "the name") or next(
            filter(None, (path_problem(result_name(name)), path_problem(figure_name(name, 0)))),
            None,
        )
        if problem is not None:
            self.fail(field + ".name", f"is no step name: {problem}")
        _sound(_SOUND_STEPS, name)

    def code(self, value: Any) -> None:
        if value is None or (  # the usual code state, at a glance; else each field in turn
            type(value) is dict
            and type(value.get("repository")) is str
            and type(value.get("commit")) is str
            and value["commit"] in _SOUND_COMMITS
            and type(value.get("branch")) is str
            and type(value.get("remotes")) is dict
            and all(type(url) is str for url in value["remotes"].values())
            and type(value.get("dirty")) is bool
        ):
            return
        code = self.mapping(value, "code")
        self.text(code.get("repository"), "code.repository")
        commit = code.get("commit")
        if commit is not None and not (isinstance(commit, str) and _COMMIT.fullmatch(commit)):
            self.fail("code.commit", f"must be a commit id (40 hex digits) or null, not {commit!r}")
        if isinstance(commit, str):
            _sound(_SOUND_COMMITS, commit)
        self.text(code.get("branch"), "code.branch", optional=True)
        self.has(code, "code", "commit", "branch")
        remotes = self.mapping(code.get("remotes"), "code.remotes")
        for name, url in remotes.items():
            if not isinstance(url, str):
                self.text(url, "code.remotes.", name)
        if not isinstance(code.get("dirty"), bool):
            self.fail("code.dirty", "must be true or false")

    def step(self, value: Any, n: int) -> None:
        if type(value) is dict:  # the usual step, at a glance; else each of its fields in turn
            self.results(value, f"steps[{n}].")
            get = value.get
            duration = get("duration", 0.0)
            if (
                type(get("name")) is str
                and get("name") in _SOUND_STEPS
                and type(get("function")) is str
                and get("status") in STEP_STATUSES
                and type(get("metrics", {})) is dict
                and _seconds(duration)
                and type(get("reused_from", "")) in (str, type(None))
                and type(get("code", "")) in (str, type(None))
                and type(get("extra", {})) is dict
            ):
                return
        field = f"steps[{n}]"
        step = self.mapping(value, field)
        self.text(step.get("name"), field, ".name")
        self.step_name(step["name"], field)
        self.text(step.get("function"), field, ".function")
        self.choice(step.get("status"), field, STEP_STATUSES, ".status")
        self.mapping(step.get("metrics", {}), field, ".metrics")
        self.number(step.get("duration", 0.0), field, ".duration")
        self.text(step.get("reused_from"), field, ".reused_from", optional=True)
        self.text(step.get("code"), field, ".code", optional=True)
        self.mapping(step.get("extra", {}), field, ".extra")


def check_record(raw: Any, *, trial_id: str, experiment: str, where: str) -> dict[str, Any]:
    """``raw`` (a parsed ``trial.json``) when every field has its type and range and the record
    sits where its id and experiment say; else :class:`BadRecord` naming ``where`` and the field.

    A record that passes holds every field a :class:`~mitosis.model.records.Trial` is made of
    (:func:`~mitosis.model.records.trial_from_json` builds it without the converter).
    ``raw`` is what :func:`json.loads` made (its objects' keys are text); ``trial_id`` is the
    name of the record's folder, ``experiment`` its branch's experiment.
    """
    check = _Checker(where)
    record = check.mapping(raw, "(the record)")
    get = record.get
    if get("id") != trial_id or not _HEX_ID.fullmatch(trial_id):
        check.fail("id", f"must be the hex name of its folder {trial_id!r}, not {get('id')!r}")
    if get("experiment") != experiment:
        check.fail(
            "experiment",
            f"must be the branch's experiment {experiment!r}, not {get('experiment')!r}",
        )
    duration = get("duration")
    if not (  # the usual fields, at a glance; else each in turn, to say which fails
        get("status") in STATUSES
        and type(get("started")) is str
        and type(get("ended")) is str
        and type(get("host")) is str
        and type(get("user")) is str
        and type(get("function")) is str
        and _seconds(duration)
        and type(get("error")) in (str, type(None))
        and type(get("rerun_of")) in (str, type(None))
        and type(get("metrics", {})) is dict
    ):
        check.choice(get("status"), "status", STATUSES)
        for field in ("started", "ended", "host", "user", "function"):
            check.text(get(field), field)
        check.number(duration, "duration")
        check.text(get("error"), "error", optional=True)
        check.text(get("rerun_of"), "rerun_of", optional=True)
        check.mapping(get("metrics", {}), "metrics")
    if "params" not in record:
        check.fail("params", "is missing")
    for kind in ("params", "untracked"):
        for name, param in check.mapping(get(kind, {}), kind).items():
            if name not in _SOUND_NAMES:
                check.name(name, kind)
            check.param(param, kind, name)
    check.results(record, "")
    check.code(get("code"))
    check.paths(get("files", []), "files")
    check.paths(get("detached", []), "detached")
    for path, caption in check.mapping(get("captions", {}), "captions").items():
        check.path(path, "captions")
        check.text(caption, "captions.", path)
    steps = get("steps", [])
    if not isinstance(steps, list):
        check.fail("steps", f"must be a list, not {type(steps).__name__}")
    for n, step in enumerate(steps):
        check.step(step, n)
    version = get("format", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        check.fail("format", f"must be a format version (1, 2, ...), not {version!r}")
    check.text(get("mitosis", ""), "mitosis")
    return record
