"""A recorded trial's code, rebuilt, and where its functions are: the recorded commit and
``code.diff`` written into a folder with dulwich (the user's checkout is never touched), the
folders of it to put first on the import path, and the check that each step's function is one
the code defines (a record may name any function of this machine).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import RerunError
from ..model.checks import path_problem
from ..model.layout import CODE_DIFF
from ..model.records import Trial
from . import environment as _environment
from .compare import recorded_environment
from .files import write_tree

if TYPE_CHECKING:
    from dulwich.repo import Repo

__all__ = [
    "checkout_roots",
    "defined_in",
    "import_roots",
    "materialize",
    "not_defined",
    "not_recorded",
    "own_path",
    "rebuild",
    "recorded_diff",
    "refs_of",
]


def refs_of(trial: Trial) -> list[tuple[str, str]]:
    """``(module, qualname)`` of each step's function, as the record names them."""
    found = []
    for record_ in trial.steps:
        module, _, qualname = record_.function.partition(":")
        if not qualname or module == "__main__" or "<" in qualname:
            raise RerunError(
                f"trial {trial.id} ran {record_.function}, which cannot be imported again "
                "(defined in __main__, a notebook or another function); rerun works for "
                "functions in a module of the code repository"
            )
        found.append((module, qualname))
    return found


def _find_commit(
    trial: Trial, store: str | None, code: str | os.PathLike[str] | None
) -> tuple[Repo, str]:
    """The repository holding the trial's code commit, and that commit."""
    from dulwich.errors import NotGitRepository
    from dulwich.objects import ObjectID
    from dulwich.repo import Repo

    state = trial.code
    if state is None or state.commit is None:
        raise RerunError(
            f"trial {trial.id} recorded no code commit (its code was not in a git repository "
            "with commits), so its code cannot be rebuilt; rerun it with --here"
        )
    places = [code] if code is not None else [store, os.getcwd(), state.repository]
    looked = []
    for place in places:
        if place is None:
            continue
        try:
            repo = Repo.discover(str(place))
        except (NotGitRepository, OSError):
            continue
        looked.append(repo.path)
        if ObjectID(state.commit.encode()) in repo.object_store:
            return repo, state.commit
        repo.close()
    remotes = ", ".join(f"{n} {u}" for n, u in state.remotes.items()) or "none recorded"
    raise RerunError(
        f"commit {state.commit} (trial {trial.id}'s code, branch {state.branch or '(detached)'}) "
        f"is not in {', '.join(dict.fromkeys(looked)) or 'any git repository found'}; fetch it "
        f"into the code's repository (e.g. `git fetch origin`; the code's remotes: {remotes}), "
        "or name the repository that has it with --code"
    )


def rebuild(
    trial: Trial,
    store: str | None,
    code: str | os.PathLike[str] | None,
    dest: Path,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Write the trial's code (commit + recorded diff) into ``dest``; return the repository
    it came from. ``progress`` is told what is being done."""
    repo, commit = _find_commit(trial, store, code)
    with repo:
        what = f"code.diff of trial {trial.id}"
        materialize(repo, commit, recorded_diff(trial), dest, what, progress)
        return str(Path(repo.path).resolve())


def recorded_diff(trial: Trial) -> bytes:
    return trial.read(CODE_DIFF) if CODE_DIFF in trial.files else b""


def not_recorded(trial: Trial) -> list[str]:
    """What the rebuilt code lacks: untracked files too large to be recorded."""
    note = _environment.UNTRACKED_NOTE.encode()
    return [
        f"not rebuilt: {line[len(note) :].decode(errors='replace')} (untracked, over 1 MiB, "
        "named but not recorded)"
        for line in recorded_diff(trial).splitlines()
        if line.startswith(note)
    ]


def materialize(
    repo: Repo,
    commit: str,
    diff: bytes,
    dest: Path,
    what: str,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Write the files of ``commit`` into ``dest`` and apply ``diff`` (``what`` it is) there."""
    from dulwich import porcelain
    from dulwich.objects import Commit, ObjectID
    from dulwich.patch import PatchApplicationFailure
    from dulwich.repo import Repo

    head = repo[ObjectID(commit.encode())]
    assert isinstance(head, Commit)
    write_tree(repo, head.tree, dest, f"rebuilding commit {commit[:10]}", progress)
    if not diff.strip():
        return
    if progress is not None:
        progress("applying the recorded uncommitted diff")
    _check_diff_paths(diff, what)
    with Repo.init(str(dest)) as scratch:  # apply_patch wants a repository around the files
        try:
            porcelain.apply_patch(scratch, io.BytesIO(diff))
        except (ValueError, OSError, PatchApplicationFailure) as exc:
            raise RerunError(
                f"the uncommitted diff ({what}) does not apply to commit {commit}: {exc}"
            ) from exc
    shutil.rmtree(dest / ".git")


def _check_diff_paths(diff: bytes, what: str) -> None:
    """Refuse a diff that names a path outside its tree (it came with the record)."""
    from dulwich.patch import parse_unified_diff

    try:
        patches = parse_unified_diff(diff)
    except Exception as exc:
        raise RerunError(f"the uncommitted diff ({what}) cannot be read: {exc}") from None
    for patch in patches:
        named = (patch.old_path, patch.new_path, patch.rename_from, patch.rename_to)
        for raw in (*named, patch.copy_from, patch.copy_to):
            if raw is None or raw == b"/dev/null":
                continue
            path = (
                os.fsdecode(raw).split("/", 1)[-1]
                if raw[:2] in (b"a/", b"b/")
                else os.fsdecode(raw)
            )
            problem = path_problem(path)
            if problem is not None:
                raise RerunError(f"the uncommitted diff ({what}) names {problem}; nothing applied")


def _candidate_roots(trial: Trial, tree: Path, repo: str) -> list[str]:
    """Folders of ``tree`` (a copy of the code's repository ``repo``) that may hold the
    experiment's modules: its root, ``src``, the folder the trial ran in, and the counterparts
    of this process's import path entries inside the repository."""
    relative = ["", "src"]
    places = [Path(p or os.getcwd()) for p in sys.path]
    if trial.code is not None:
        cwd = recorded_environment(trial).get("cwd")
        if isinstance(cwd, str) and cwd and Path(cwd).is_relative_to(trial.code.repository):
            relative.append(str(Path(cwd).relative_to(trial.code.repository)))
    for place in places:
        with contextlib.suppress(OSError, ValueError):
            relative.append(str(place.resolve().relative_to(repo)))
    inside = tree.resolve()  # a recorded cwd of <repository>/../../x leaves it: never searched
    return [
        str(tree / r)
        for r in dict.fromkeys(relative)
        if (tree / r).is_dir() and (tree / r).resolve().is_relative_to(inside)
    ]


def checkout_roots(trial: Trial) -> tuple[str, ...]:
    """For ``--here``: the folders of the checkout around the current directory that may hold
    the experiment's modules (none outside git), found as in the rebuilt code."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    try:
        with Repo.discover(os.getcwd()) as repo:
            root = Path(repo.path).resolve()
    except NotGitRepository:
        return ()
    return tuple(_candidate_roots(trial, root, str(root)))


def own_path(modules: list[str]) -> tuple[str, ...]:
    """Outside a checkout, the folders that hold the user's code: those of this process's
    import path, and those an import hook knows for the top-level packages of ``modules`` (an
    editable install; found, not imported), but not the standard library's nor the installed
    distributions' (a record may name any of their functions)."""
    import importlib.util
    import sysconfig

    system = {Path(p).resolve() for p in sysconfig.get_paths().values()}
    found = [p or os.getcwd() for p in sys.path]
    for top in dict.fromkeys(m.partition(".")[0] for m in modules):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(top)  # a top-level name: nothing runs
            if spec is not None and spec.has_location and spec.origin:
                origin = Path(spec.origin)  # <root>/<top>.py, or <root>/<top>/__init__.py
                found.append(str(origin.parent.parent if spec.parent else origin.parent))
    return tuple(
        entry
        for entry in dict.fromkeys(found)
        if Path(entry).is_dir() and not any(Path(entry).resolve().is_relative_to(s) for s in system)
    )


def import_roots(
    trial: Trial, tree: Path, repo: str, refs: list[tuple[str, str]]
) -> tuple[str, ...]:
    """Folders of the rebuilt ``tree`` to put first on the import path: where the experiment's
    modules are, then the tree's counterparts of the import path entries inside the code's
    repository (and of the folder the trial ran in).

    Raises:
        RerunError: a step's module is not there, or does not define its function.
    """
    roots = _candidate_roots(trial, tree, repo)
    first = defined_in(trial, tuple(roots), refs, "its rebuilt code", "was it committed?")
    return tuple(dict.fromkeys([*first, *roots]))


def defined_in(
    trial: Trial, roots: tuple[str, ...], refs: list[tuple[str, str]], where: str, fix: str
) -> list[str]:
    """The folder of ``roots`` holding each step's module, whose source (parsed, never run)
    defines the step's function with a ``def`` or a ``class``: a record naming
    ``shutil:rmtree`` or ``experiments:os.system`` would otherwise call it with its recorded
    arguments.

    Raises:
        RerunError: a module is in none of ``roots`` (``where`` names them; ``fix`` says what
            to do), or does not define the function.
    """
    first = []
    for module, qualname in refs:
        parts = module.split(".")
        found = [
            (root, source)
            for root in roots
            for source in (Path(root, *parts).with_suffix(".py"), Path(root, *parts, "__init__.py"))
            if source.is_file()
        ]
        if not found:
            raise RerunError(
                f"cannot import {module}:{qualname} (trial {trial.id}'s experiment): the module "
                f"is not in {where} (looked in {', '.join(roots) or 'no folder'}); {fix}"
            )
        if not _defines(found[0][1], qualname):
            raise RerunError(not_defined(trial, module, qualname, where))
        first.append(found[0][0])
    return first


def not_defined(trial: Trial, module: str, qualname: str, where: str) -> str:
    return (
        f"trial {trial.id} names {module}:{qualname} as its experiment, which is no function "
        f"that module of {where} defines (a def or a class there); rerun and export call only "
        "the experiment's own functions (was the record forged?)"
    )


def _defines(source: Path, qualname: str) -> bool:
    """Whether the Python file ``source`` (parsed, never run) defines ``qualname`` (``f``,
    ``Class.method``) by ``def`` or ``class``, at its top level or in a block there."""
    import ast

    try:
        body: list[ast.stmt] = ast.parse(source.read_bytes()).body
    except (OSError, SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    for part in qualname.split("."):
        found = [node for node in _defs(body) if node.name == part]
        if not found:
            return False
        body = found[-1].body
    return True


def _defs(body: list[Any]) -> Iterator[Any]:
    """The ``def`` and ``class`` statements of a body, and of its blocks (``if``, ``try``,
    ``with``, ``for``), not of the functions and classes it defines."""
    import ast

    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from _defs(inner)
