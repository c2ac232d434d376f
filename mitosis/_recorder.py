"""Turning a finished trial into files on its experiment's branch, and reading trials back.

Reading touches JSON only: listing and loading trials never unpickles anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs

from ._cache import ListingCache
from ._model import FORMAT, Trial, trial_dir, trial_from_json
from ._params import Resolved
from ._serialize import decode, dumps_json
from ._store import Check, Store
from .exceptions import (
    StoreError,
    UnknownExperiment,
    UnknownVariant,
    VariantConflict,
    VariantRenamed,
)

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = [
    "Variant",
    "commit_message",
    "load",
    "load_json",
    "lock_check",
    "read_trials",
    "rename_variant",
    "trials",
    "variant_files",
    "variants",
]

_SUMMARY_VALUE = 40
# trial.json records, by the id of their folder's tree: content-addressed, so never stale.
_CACHE: dict[tuple[str, bytes], Any] = {}
_SHARDS: dict[tuple[str, bytes], list[tuple[str, ObjectID]]] = {}
_CACHE_LIMIT = 200_000
_CONTAINERS = (dict, list)


def variant_path(param: str, variant: str) -> str:
    """``variants/<param>/<variant>`` without extension; the name is %-escaped to be a path."""
    return f"variants/{param}/{quote(variant, safe=' -_.,=+@()')}"


def variant_files(resolved: Iterable[Resolved]) -> dict[str, bytes]:
    """The lock files of the named variants among ``resolved`` (the same bytes on every server
    for the same value, so that histories merge)."""
    files: dict[str, bytes] = {}
    for r in resolved:
        if not (r.tracked and r.source == "variant"):
            continue
        base = variant_path(r.name, r.variant)
        dill_name = None
        if r.encoded.pickled is not None:
            dill_name = base.rsplit("/", 1)[1] + ".dill"
            files[base + ".dill"] = r.encoded.pickled
        record = {
            "param": r.name,
            "variant": r.variant,
            "value": r.encoded.json,
            "type": r.encoded.type,
            "fingerprint": r.encoded.fingerprint,
            "dill": dill_name,
        }
        files[base + ".json"] = dumps_json(record, indent=2).encode()
    return files


def describe_lock(record: dict[str, Any]) -> str:
    """A locked value as people read it: its JSON and type, or its type and fingerprint."""
    if record.get("value") is not None or record.get("dill") is None:
        return f"{dumps_json(record.get('value'))} ({record.get('type')})"
    return f"a pickled {record.get('type')} ({record.get('fingerprint')})"


def lock_check(experiment: str, resolved: list[Resolved]) -> Check:
    """A store check refusing a named variant already locked to a different value."""

    def check(store: Store, tree_id: ObjectID | None) -> None:
        for r in resolved:
            if not (r.tracked and r.source == "variant") or tree_id is None:
                continue
            base = variant_path(r.name, r.variant)
            raw = store.read_file(experiment, base + ".json", tree_id)
            locked = load_json(raw, f"the lock of {r.name}={r.variant}") if raw else None
            if locked is not None and locked.get("fingerprint") == r.encoded.fingerprint:
                continue
            alias = store.read_file(experiment, _alias_path(base, r.encoded.fingerprint), tree_id)
            if alias is not None:  # this value had this name here once; it has another now
                renamed = load_json(alias, f"the rename of {r.name}={r.variant}")
                raise VariantRenamed(experiment, r.name, r.variant, renamed.get("renamed_to"))
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
                r.name,
                r.variant,
                describe_lock(locked),
                describe_lock(mine),
                _locked_by(store, experiment, r.name, r.variant),
            )

    return check


def _alias_path(base: str, fingerprint: str) -> str:
    """Where a renamed variant's old name points to its new one, per value."""
    return f"{base}.renamed/{fingerprint.removeprefix('sha256:')[:16]}.json"


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
        UnknownVariant: ``old`` is not locked.
        VariantConflict: ``new`` is already locked to another value.
    """
    with Store.open(store) as st:
        source, target = variant_path(param, old), variant_path(param, new)

        def check(s: Store, tree: ObjectID | None) -> None:
            raw = s.read_file(experiment, source + ".json", tree)
            if raw is None:
                known = [v.name for v in variants(experiment, param, store=s.path)]
                raise UnknownVariant(f"{param}", old, known)
            lock = load_json(raw, f"the lock of {param}={old}")
            taken = s.read_file(experiment, target + ".json", tree)
            if taken is not None:
                other = load_json(taken, f"the lock of {param}={new}")
                if other.get("fingerprint") != lock.get("fingerprint"):
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
        lock = load_json(st.read_file(experiment, source + ".json", tree) or b"{}", source)
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
            _alias_path(source, lock.get("fingerprint", "")): dumps_json(
                {
                    "param": param,
                    "variant": old,
                    "renamed_to": new,
                    "fingerprint": lock.get("fingerprint"),
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
    users = [
        t
        for t in read_trials(store, experiment)
        if param in t.params
        and t.params[param].source == "variant"
        and t.params[param].variant == variant
    ]
    return min(users, key=lambda t: (t.started, t.id)).id if users else "(unknown: merged in)"


def commit_message(trial: Trial) -> str:
    """A one-line summary, then git trailers, so ``git log`` reads like a lab notebook."""

    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= _SUMMARY_VALUE else text[: _SUMMARY_VALUE - 1] + "…"

    params = " ".join(f"{n}={short(p.variant)}" for n, p in trial.params.items())
    main = trial.main
    shown = format(main, ".4g") if isinstance(main, float) else json.dumps(main)
    result = f"main={short(shown)}" if trial.status == "ok" else trial.status
    summary = f"{trial.experiment}: {params or '(no parameters)'} -> {result} ({trial.status})"
    code = "none"
    if trial.code is not None:
        code = (trial.code.commit or "no-commit") + (" dirty" if trial.code.dirty else "")
    rerun = f"Mitosis-Rerun-Of: {trial.rerun_of}\n" if trial.rerun_of else ""
    return (
        f"{summary}\n\n"
        f"Mitosis-Trial: {trial.id}\n"
        f"Mitosis-Experiment: {trial.experiment}\n"
        f"Mitosis-Code-Commit: {code}\n"
        f"Mitosis-Status: {trial.status}\n"
        f"{rerun}"
    )


def _parse(raw: Any, where: str, location: str) -> Trial:
    try:
        if raw.get("format", 1) > FORMAT:
            raise StoreError(
                f"{where} was written by a newer mitosis (store format {raw['format']}); "
                "upgrade mitosis to read it"
            )
        return trial_from_json(_results(raw), location)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{where} is not a readable trial record: {exc!r}") from None


def _tagged(value: Any) -> bool:
    """Whether a result may hold a tag (only containers can): most hold plain numbers."""
    if type(value) is dict:
        return "py/float" in value or any(type(v) in _CONTAINERS for v in value.values())
    return type(value) is list


def _decoded(value: Any) -> Any:
    return decode(value) if _tagged(value) else value


def _results(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its results' tags (``{"py/float": "nan"}``) decoded."""
    decoded = {
        **record,
        "main": _decoded(record.get("main")),
        "metrics": _decoded(record.get("metrics") or {}),
    }
    steps = record.get("steps") or []
    if any(_tagged(s.get("main")) or _tagged(s.get("metrics")) for s in steps):
        decoded["steps"] = [
            {**s, "main": _decoded(s.get("main")), "metrics": _decoded(s.get("metrics") or {})}
            for s in steps
        ]
    return decoded


def load_json(data: bytes, where: str) -> Any:
    """JSON from the store; what is not JSON is a :class:`StoreError` naming ``where``."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{where} is not readable JSON: {exc}") from None


def read_trials(store: Store, experiment: str, commit: ObjectID | None = None) -> list[Trial]:
    """The trials on an experiment's branch (or at ``commit`` of it), read from their
    ``trial.json`` blobs alone.

    Records are kept by the id of their folder's tree, in memory and in the store's listing
    cache (see :mod:`mitosis._cache`): content-addressed, so never stale. Each call builds new
    ``Trial`` objects from them, so that changing one changes no later listing.
    """
    root = store.tree_of(commit or store.tip(experiment))
    found = []
    with ListingCache(store, experiment) as cache:
        for _shard, shard_id in store.children(root, "trials"):
            entries = _SHARDS.get((store.path, shard_id)) or cache.shard(shard_id)
            if entries is None:
                entries = store.children(shard_id, "")
            cache.keep_shard(shard_id, entries)
            _SHARDS[store.path, shard_id] = entries
            for trial_id, tree_id in entries:
                key = (store.path, tree_id)
                where = f"trial {trial_id} of {experiment}"
                record = _CACHE.get(key)
                if record is not None:
                    cache.keep(tree_id, record)
                else:
                    record = cache.record(tree_id)
                    if record is None:
                        data = store.read_file(experiment, "trial.json", tree_id)
                        if data is None:
                            continue
                        record = load_json(data, where)
                        cache.keep(tree_id, record)
                    if len(_CACHE) >= _CACHE_LIMIT:
                        _CACHE.clear()
                        _SHARDS.clear()
                    _CACHE[key] = record
                found.append(_parse(record, where, store.path))
    return found


def trials(
    experiment: str | None = None, *, store: str | os.PathLike[str] | None = None
) -> list[Trial]:
    """Every recorded trial of an experiment (or of all experiments), oldest first.

    Reads JSON only: nothing is unpickled.

    Raises:
        UnknownExperiment: the store has no branch for ``experiment``.
    """
    with Store.open(store) as st:
        names = st.experiments()
        if experiment is not None:
            if experiment not in names:
                raise UnknownExperiment(experiment, names, st.path)
            names = [experiment]
        found = [t for name in names for t in read_trials(st, name)]
    return sorted(found, key=lambda t: (t.started, t.id))


def load(id_prefix: str, *, store: str | os.PathLike[str] | None = None) -> Trial:
    """The trial whose id starts with ``id_prefix`` (4 or more hex digits).

    Raises:
        UnknownTrial: no trial matches.
        AmbiguousTrialId: several trials match; give more characters.
    """
    with Store.open(store) as st:
        experiment, trial_id = st.find(id_prefix)
        data = st.read_file(experiment, f"{trial_dir(trial_id)}/trial.json")
        if data is None:
            raise StoreError(f"trial {trial_id} of {experiment} has no trial.json")
        where = f"trial {trial_id}"
        return _parse(load_json(data, where), where, st.path)


@attrs.frozen
class Variant:
    """A variant name locked to its value on an experiment's branch.

    Attributes:
        param: the parameter.
        name: the variant's name.
        value: the value as canonical JSON, or None when only its pickle holds it.
        type: the qualified name of the value's type.
        fingerprint: what equality of values is decided by.
        pickled: whether a pickle of the value is stored beside the JSON.
        trials: how many trials on the branch used this variant.
    """

    param: str
    name: str
    value: Any
    type: str
    fingerprint: str
    pickled: bool
    trials: int


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
        used: dict[tuple[str, str, str], int] = {}  # by name and value: renames move names
        for trial in read_trials(st, experiment):
            for name, p in trial.params.items():
                if p.source == "variant":
                    key = (name, p.variant, p.fingerprint)
                    used[key] = used.get(key, 0) + 1
        params = [param] if param else [name for name, _ in st.children(root, "variants")]
        found = []
        for name in params:
            renamed: dict[tuple[str, str], int] = {}  # (new name, fingerprint) -> trials
            for folder, _ in st.children(root, f"variants/{name}"):
                if folder.endswith(".renamed"):
                    for _, alias_id in st.children(root, f"variants/{name}/{folder}"):
                        alias = load_json(st.read_file(experiment, "", alias_id) or b"", folder)
                        target = (alias.get("renamed_to", ""), alias.get("fingerprint", ""))
                        renamed[target] = renamed.get(target, 0) + used.get(
                            (name, alias.get("variant", ""), target[1]), 0
                        )
            for file, blob_id in st.children(root, f"variants/{name}"):
                if not file.endswith(".json"):
                    continue
                where = f"variants/{name}/{file} of {experiment}"
                record = load_json(st.read_file(experiment, "", blob_id) or b"", where)
                if not isinstance(record, dict) or not isinstance(record.get("variant"), str):
                    raise StoreError(f"{where} is not a readable variant lock")
                found.append(
                    Variant(
                        param=name,
                        name=record["variant"],
                        value=record.get("value"),
                        type=record.get("type", ""),
                        fingerprint=record.get("fingerprint", ""),
                        pickled=record.get("dill") is not None,
                        trials=used.get((name, record["variant"], record.get("fingerprint", "")), 0)
                        + renamed.get((record["variant"], record.get("fingerprint", "")), 0),
                    )
                )
    return sorted(found, key=lambda v: (v.param, v.name))
