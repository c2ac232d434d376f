"""Variant locks: a variant name, once used, is locked to its value on the experiment's branch.

Locks are written (before a trial runs, and with it), checked against the branch at every
commit, renamed to settle a conflict, and listed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..exceptions import (
    StoreError,
    UnknownExperiment,
    UnknownVariant,
    VariantConflict,
    VariantRenamed,
)
from ..model.checks import lock_problem
from ..model.layout import VARIANTS, alias_path, variant_path
from ..model.records import Variant, VariantLock
from ..model.text import check_name
from ..model.values import dumps_json
from .repo import Check, Store
from .trials import load_json, renames, variant_uses

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = [
    "describe_lock",
    "lock_check",
    "lock_new",
    "read_lock",
    "rename_variant",
    "variant_files",
    "variants",
]


def variant_files(locks: Iterable[VariantLock]) -> dict[str, bytes]:
    """The lock files of ``locks`` (the same bytes on every server for the same value, so that
    histories merge)."""
    files: dict[str, bytes] = {}
    for r in locks:
        base = variant_path(r.param, r.variant)
        dill_name = None
        if r.encoded.pickled is not None:
            dill_name = base.rsplit("/", 1)[1] + ".dill"
            files[base + ".dill"] = r.encoded.pickled
        record = {
            "param": r.param,
            "variant": r.variant,
            "value": r.encoded.json,
            "type": r.encoded.type,
            "fingerprint": r.encoded.fingerprint,
            "dill": dill_name,
        }
        files[base + ".json"] = dumps_json(record, indent=2).encode()
    return files


def read_lock(raw: bytes, path: str, experiment: str) -> dict[str, Any]:
    """The variant lock file (or rename's note) at ``path`` on ``mitosis/<experiment>``,
    parsed and checked (see :func:`~mitosis.model.checks.lock_problem`): it may have come with
    a pull.

    Raises:
        StoreError: it is not JSON, or not a lock (a note) of the name its place says.
    """
    where = f"{path} on mitosis/{experiment}"
    lock = load_json(raw, where)
    problem = lock_problem(lock, path)
    if problem is not None:
        raise StoreError(
            f"{where} is not a readable variant lock: {problem}. mitosis did not write it (a "
            "damaged or forged file, maybe from a pull): use another variant name, or remove "
            "the file from the branch"
        )
    return cast("dict[str, Any]", lock)


def describe_lock(record: dict[str, Any]) -> str:
    """A locked value as people read it: its JSON and type, or its type and fingerprint."""
    if record.get("value") is not None or record.get("dill") is None:
        return f"{dumps_json(record.get('value'))} ({record.get('type')})"
    return f"a pickled {record.get('type')} ({record.get('fingerprint')})"


def lock_check(experiment: str, locks: Sequence[VariantLock]) -> Check:
    """A store check refusing a variant name already locked to a different value."""

    def check(store: Store, tree_id: ObjectID | None) -> None:
        if tree_id is None:
            return
        for r in locks:
            base = variant_path(r.param, r.variant)
            raw = store.read_file(experiment, base + ".json", tree_id)
            locked = read_lock(raw, base + ".json", experiment) if raw is not None else None
            if locked is not None and locked["fingerprint"] == r.encoded.fingerprint:
                continue
            note = alias_path(base, r.encoded.fingerprint)
            alias = store.read_file(experiment, note, tree_id)
            if alias is not None:  # this value had this name here once; it has another now
                renamed = read_lock(alias, note, experiment)
                raise VariantRenamed(experiment, r.param, r.variant, renamed["renamed_to"])
            if locked is None:
                continue
            mine = {
                "value": r.encoded.json,
                "type": r.encoded.type,
                "dill": "",
                "fingerprint": r.encoded.fingerprint,
            }
            raise VariantConflict(
                experiment,
                r.param,
                r.variant,
                describe_lock(locked),
                describe_lock(mine),
                _locked_by(store, experiment, r.param, r.variant),
            )

    return check


def lock_new(store: Store, experiment: str, locks: Sequence[VariantLock]) -> None:
    """Lock the variant names not locked yet in a commit of their own, before a trial runs, so
    that two trials meaning different values by one new name cannot both run: the second is
    refused.

    Raises:
        BadParameter: a parameter or variant name holds a control character (a newline would
            forge a trailer of the lock's commit message).
        VariantConflict: a name is locked to another value.
        VariantRenamed: a name meant this value once, and has been renamed since.
    """
    for r in locks:
        check_name("parameter name", r.param, "give the parameter another name")
        check_name(f"parameter {r.param!r}: the variant name", r.variant, "rename the variant")
    check = lock_check(experiment, locks)
    tree = store.tree_of(store.tip(experiment))
    check(store, tree)
    new = [
        r
        for r in locks
        if store.read_file(experiment, variant_path(r.param, r.variant) + ".json", tree) is None
    ]
    if new:
        names = " ".join(f"{r.param}={r.variant}" for r in new)
        message = f"{experiment}: lock {names}\n\nMitosis-Lock: {names}\n"
        store.commit(experiment, variant_files(new), message, check)


def rename_variant(
    experiment: str,
    param: str,
    old: str,
    new: str,
    *,
    store: str | os.PathLike[str] | None = None,
) -> None:
    """Give a locked variant a new name, to settle a variant conflict between two stores.

    Nothing recorded changes: trials keep their records (which hold the value, not only the
    name). The lock moves from ``old`` to ``new`` in a new commit, and a note records that
    ``old`` with this value is now ``new``; running with ``old`` meaning this value is then
    refused with a pointer to ``new``, and a pull can bring in the other store's ``old``.

    Raises:
        BadParameter: ``new`` holds a control character (names are one line of printable text).
        UnknownVariant: ``old`` is not locked.
        VariantConflict: ``new`` is already locked to another value.
    """
    check_name(f"the new name of {param}={old!r}", new, "choose a name of printable text")
    with Store.open(store) as st:
        source, target = variant_path(param, old), variant_path(param, new)

        def check(s: Store, tree: ObjectID | None) -> None:
            raw = s.read_file(experiment, source + ".json", tree)
            if raw is None:
                known = [v.name for v in variants(experiment, param, store=s.path)]
                raise UnknownVariant(f"{param}", old, known)
            lock = read_lock(raw, source + ".json", experiment)
            taken = s.read_file(experiment, target + ".json", tree)
            if taken is not None:
                other = read_lock(taken, target + ".json", experiment)
                if other["fingerprint"] != lock["fingerprint"]:
                    raise VariantConflict(
                        experiment,
                        param,
                        new,
                        describe_lock(other),
                        describe_lock(lock),
                        _locked_by(s, experiment, param, new),
                    )

        tree = st.tree_of(st.tip(experiment))
        check(st, tree)
        lock = read_lock(
            st.read_file(experiment, source + ".json", tree) or b"", source + ".json", experiment
        )
        pickled = st.read_file(experiment, source + ".dill", tree)
        moved = {
            **lock,
            "variant": new,
            "dill": f"{target.rsplit('/', 1)[1]}.dill" if pickled else None,
        }
        files: dict[str, bytes | None] = {
            source + ".json": None,
            source + ".dill": None,
            target + ".json": dumps_json(moved, indent=2).encode(),
            alias_path(source, lock["fingerprint"]): dumps_json(
                {
                    "param": param,
                    "variant": old,
                    "renamed_to": new,
                    "fingerprint": lock["fingerprint"],
                },
                indent=2,
            ).encode(),
        }
        if pickled is not None:
            files[target + ".dill"] = pickled
        message = (
            f"{experiment}: rename {param}={old} to {new}\n\n"
            f"Mitosis-Rename: {param}={old} -> {new}\n"
        )
        st.commit(experiment, files, message, check)


def _locked_by(store: Store, experiment: str, param: str, variant: str) -> str:
    """The first trial (oldest) that used ``param=variant``."""
    for trial_id, used in variant_uses(store, experiment):
        if any(p == param and v == variant for p, v, _ in used):
            return trial_id
    return "(unknown: merged in)"


def variants(
    experiment: str, param: str | None = None, *, store: str | os.PathLike[str] | None = None
) -> list[Variant]:
    """The locked variants of an experiment (or of one of its parameters), sorted by name.

    Raises:
        UnknownExperiment: the store has no branch for ``experiment``.
    """
    with Store.open(store) as st:
        if st.tip(experiment) is None:
            raise UnknownExperiment(experiment, st.experiments(), st.path)
        root = st.tree_of(st.tip(experiment))
        now = renames(st, experiment, st.tip(experiment))
        used: dict[tuple[str, str, str], int] = {}  # by name now and value
        for _, locked in variant_uses(st, experiment):
            for name, variant, fingerprint in locked:
                key = (name, now.get((name, variant, fingerprint), variant), fingerprint)
                used[key] = used.get(key, 0) + 1
        params = [param] if param else [name for name, _ in st.children(root, "variants")]
        found = []
        for name in params:
            for file, blob_id in st.children(root, f"{VARIANTS}/{name}"):
                if not file.endswith(".json"):
                    continue
                path = f"{VARIANTS}/{name}/{file}"
                record = read_lock(st.read_file(experiment, "", blob_id) or b"", path, experiment)
                found.append(
                    Variant(
                        param=name,
                        name=record["variant"],
                        value=record["value"],
                        type=record["type"],
                        fingerprint=record["fingerprint"],
                        pickled=record.get("dill") is not None,
                        trials=used.get((name, record["variant"], record["fingerprint"]), 0),
                    )
                )
    return sorted(found, key=lambda v: (v.param, v.name))
