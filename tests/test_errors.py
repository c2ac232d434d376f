"""Every error mitosis raises on purpose: the message names the thing and the fix, and nothing
already recorded is harmed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import foreground_job, git

import mitosis
from mitosis.store.repo import Store


def branch_length(experiment: str) -> int:
    out = git("rev-list", f"mitosis/{experiment}", check=False)
    return len(out.split())


def test_unknown_parameter_names_it_and_the_signature(investigation):
    with pytest.raises(mitosis.BadParameter) as err:
        mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.1, "nosie": 2})
    message = str(err.value)
    assert "'nosie'" in message and "sine(amplitude: float, noise: float, gpu: int = 0)" in message
    assert isinstance(err.value, TypeError)
    assert branch_length("sine") == 0


def test_missing_required_parameter(investigation):
    with pytest.raises(mitosis.BadParameter, match=r"needs a value for 'noise'.*signature is sine"):
        mitosis.run(investigation.sine, {"amplitude": 1})


def test_untracked_name_that_is_no_parameter(investigation):
    with pytest.raises(
        mitosis.BadParameter, match=r"untracked parameter 'gpus' is not a parameter"
    ):
        mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.1}, untracked=["gpus"])


def test_unknown_variant_lists_known_names(investigation):
    with pytest.raises(mitosis.UnknownVariant) as err:
        mitosis.run(
            investigation.sine, {"amplitude": 1, "noise": "medium"}, lookup=investigation.lookup
        )
    assert err.value.known == ["high", "low"]
    assert "'medium'" in str(err.value) and "known variants: high, low" in str(err.value)
    assert isinstance(err.value, KeyError)
    assert branch_length("sine") == 0


def test_malformed_lookup_dictionary(investigation):
    with pytest.raises(mitosis.BadParameter, match=r"lookup\['noise'\] must map variant names"):
        mitosis.run(investigation.sine, {"amplitude": 1, "noise": "low"}, lookup={"noise": [0.1]})


def test_not_a_callable():
    with pytest.raises(mitosis.BadParameter, match="an experiment is a callable"):
        mitosis.run("sine")  # type: ignore[arg-type]


def test_variant_conflict_is_refused_before_running(investigation, capfd):
    first = mitosis.run(
        investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup
    )
    capfd.readouterr()
    changed = {"noise": {"low": 0.02, "high": 0.5}}
    with pytest.raises(mitosis.VariantConflict) as err:
        mitosis.run(investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=changed)
    message = str(err.value)
    assert "noise=low" in message and "0.01" in message and "0.02" in message
    assert first.id in message and err.value.locked_by == first.id
    assert "sine running" not in capfd.readouterr().out  # nothing ran
    assert branch_length("sine") == 2  # the lock of noise=low, then the trial
    # an equal value (a new but equal object) is fine, and so are other names
    mitosis.run(
        investigation.sine, {"amplitude": 2, "noise": "low"}, lookup={"noise": {"low": 0.01}}
    )
    mitosis.run(
        investigation.sine, {"amplitude": 2, "noise": "low2"}, lookup={"noise": {"low2": 0.02}}
    )
    assert branch_length("sine") == 5  # + a trial, + the lock of noise=low2 and a trial
    assert git("log", "--format=%s", "mitosis/sine").splitlines()[1] == "sine: lock noise=low2"


def test_experiment_exception_is_recorded_then_raised(investigation):
    with pytest.raises(mitosis.TrialFailed) as err:
        mitosis.run(investigation.fails, {"x": 7})
    failed = err.value
    assert failed.status == "failed" and failed.trial_id
    assert "ValueError: bad x 7" in str(failed)
    trial = mitosis.load(failed.trial_id)
    assert trial.status == "failed" and trial.main is None
    assert "Traceback" in trial.error and "ValueError: bad x 7" in trial.error
    assert "about to fail" in trial.read("output.log").decode()
    assert "(failed)" in git("log", "-1", "--format=%s", "mitosis/fails")
    assert "Mitosis-Status: failed" in git("log", "-1", "--format=%B", "mitosis/fails")
    with pytest.raises(mitosis.StoreError, match=r"has no 'results/fails\.dill'"):
        trial.results()


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [("wrong_shape", "returned str 'not a result'"), ("no_main", 'no "main" key')],
)
def test_wrong_return_shape_is_a_failed_trial(investigation, experiment, expected):
    with pytest.raises(mitosis.TrialFailed, match=expected) as err:
        mitosis.run(getattr(investigation, experiment))
    assert mitosis.load(err.value.trial_id).status == "failed"


def test_killed_worker_is_recorded_as_killed(investigation):
    before = mitosis.run(investigation.bare_number)
    with pytest.raises(mitosis.TrialFailed) as err:
        mitosis.run(investigation.kills_itself)
    trial = mitosis.load(err.value.trial_id)
    assert trial.status == "killed" and "SIGKILL" in trial.error
    assert "going down" in trial.read("output.log").decode()
    assert mitosis.load(before.id).results() == 6.0  # nothing recorded earlier is harmed
    git("fsck", "--strict")


def test_worker_interrupted_is_recorded_as_interrupted(investigation):
    with pytest.raises(mitosis.TrialFailed) as err:
        mitosis.run(investigation.interrupts_itself)
    trial = mitosis.load(err.value.trial_id)
    assert trial.status == "interrupted" and "KeyboardInterrupt" in trial.error


def test_ctrl_c_in_the_caller_records_the_trial_as_interrupted(investigation):
    script = Path("ctrl_c.py")
    script.write_text(
        textwrap.dedent(f"""
        import mitosis
        from {investigation.__name__} import sleeps
        mitosis.run(sleeps, {{"seconds": 30}})
    """)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=foreground_job,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"sleeping\n"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole group
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    (trial,) = mitosis.trials("sleeps")
    assert trial.status == "interrupted"
    assert trial.duration < 20
    assert "(interrupted)" in git("log", "-1", "--format=%s", "mitosis/sleeps")


def test_unknown_and_ambiguous_trial_ids(tmp_path):
    store_path = tmp_path / "store.git"
    git("init", "-q", "--bare", str(store_path))
    with Store.open(store_path) as store:
        for trial_id in ("abcd1111aaaa", "abcd2222bbbb"):
            store.commit("made", {f"trials/ab/{trial_id}/trial.json": b"{}"}, "made by hand")
    with pytest.raises(mitosis.AmbiguousTrialId, match=r"'abcd' matches 2 trials.*more characters"):
        mitosis.load("abcd", store=store_path)
    with pytest.raises(
        mitosis.UnknownTrial, match=r"no trial in the store .* starting with 'abce'"
    ):
        mitosis.load("abce", store=store_path)
    with pytest.raises(mitosis.UnknownTrial, match="4 or more hex digits"):
        mitosis.load("abc", store=store_path)
    with pytest.raises(mitosis.StoreError, match="not a readable trial record"):
        mitosis.load("abcd1", store=store_path)


def test_unknown_experiment(investigation):
    mitosis.run(investigation.bare_number)
    with pytest.raises(mitosis.UnknownExperiment, match=r"no experiment 'sien'.*bare_number"):
        mitosis.trials("sien")


def test_store_that_is_not_a_repository(investigation, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(mitosis.StoreError, match=r"is not a git repository.*git init"):
        mitosis.run(investigation.bare_number, store=plain)


def test_experiment_name_that_cannot_be_a_branch(investigation):
    named = mitosis.experiment(name="my experiment")(investigation.bare_number)
    with pytest.raises(mitosis.StoreError, match="'my experiment' cannot name a git branch"):
        mitosis.run(named)


def test_debug_trial_failure_has_no_id(investigation):
    with pytest.raises(mitosis.TrialFailed, match=r"debug, not recorded.*bad x 1") as err:
        mitosis.run(investigation.fails, debug=True)
    assert err.value.trial_id is None
    assert git("for-each-ref", "refs/heads/mitosis") == ""


def test_worker_that_cannot_import_the_function(investigation, tmp_path):
    module = tmp_path / "vanishing.py"
    module.write_text("def f():\n    return 1.0\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import vanishing

        module.unlink()
        with pytest.raises(mitosis.TrialFailed, match="ModuleNotFoundError"):
            mitosis.run(vanishing.f)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("vanishing", None)


def test_new_variant_is_locked_before_the_trial_runs(investigation):
    script = textwrap.dedent(f"""
        import mitosis
        from {investigation.__name__} import slow_echo
        mitosis.run(slow_echo, {{"value": "fresh"}}, lookup={{"value": {{"fresh": 1}}}})
    """)
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert first.stdout is not None and first.stdout.readline() == b"started\n"
    subjects = git("log", "--format=%s", "mitosis/slow_echo").splitlines()
    assert subjects == ["slow_echo: lock value=fresh"]
    with pytest.raises(mitosis.VariantConflict, match="value=fresh"):
        mitosis.run(investigation.slow_echo, {"value": "fresh"}, lookup={"value": {"fresh": 2}})
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert len(mitosis.trials("slow_echo")) == 1


def test_experiment_name_with_a_slash_is_refused_before_running(investigation, capfd):
    named = mitosis.experiment(name="group/sine")(investigation.noisy)
    with pytest.raises(mitosis.StoreError, match="cannot name a git branch"):
        mitosis.run(named)
    assert "out 0" not in capfd.readouterr().out


def test_real_time_signal_is_recorded_as_killed(investigation):
    with pytest.raises(mitosis.TrialFailed) as err:
        mitosis.run(investigation.real_time_signal)
    trial = mitosis.load(err.value.trial_id)
    assert trial.status == "killed"
    assert f"signal {int(signal.SIGRTMIN)}" in trial.error or "SIGRTMIN" in trial.error


def test_unpicklable_result_fails_without_a_main(investigation):
    with pytest.raises(mitosis.TrialFailed, match="cannot pickle this") as err:
        mitosis.run(investigation.unpicklable_result)
    trial = mitosis.load(err.value.trial_id)
    assert trial.status == "failed" and trial.main is None and trial.steps[0].main is None


def test_reading_never_creates_a_store(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(mitosis.StoreError, match="there is no store at"):
        mitosis.trials(store=missing)
    with pytest.raises(mitosis.StoreError, match="there is no store at"):
        mitosis.load("abcd", store=missing)
    assert not missing.exists()


def test_malformed_lock_file_is_a_store_error(investigation):
    mitosis.run(investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup)
    with Store.open(".") as store:
        store.commit("sine", {"variants/noise/low.json": b"not json"}, "break the lock\n")
    said = r"variants/noise/low\.json on mitosis/sine is not readable JSON"
    with pytest.raises(mitosis.StoreError, match=said):
        mitosis.variants("sine")
    with pytest.raises(mitosis.StoreError, match=said):
        mitosis.run(
            investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup
        )


def open_ended(**params):
    return 1.0


def _generator():
    yield 1


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("not me")


class NoRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


GENERATOR = _generator()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("\ud800", r"its value \(a str\) cannot be stored: it holds text with a lone surrogate"),
        ({"k": ["\udfff"]}, r"its value \(a dict\) cannot be stored: .* lone surrogate"),
        (_generator(), r"its value \(a generator\) cannot be stored: pickling failed: TypeError"),
        (Unpicklable(), r"its value \(an? .*Unpicklable\) cannot .*: RuntimeError: not me"),
    ],
)
def test_a_value_that_cannot_be_stored_is_a_bad_parameter(investigation, tmp_path, value, why):
    store = tmp_path / "store"
    with pytest.raises(mitosis.BadParameter, match=f"^parameter 'value': {why}"):
        mitosis.run(investigation.echo, {"value": value}, store=store)
    with pytest.raises(mitosis.BadParameter, match=f"^parameter 'value': {why}"):
        mitosis.sweep(investigation.echo, {"value": [1, value]}, store=store)
    assert not store.exists()  # refused before anything was written


def test_a_default_that_cannot_be_stored_is_a_bad_parameter(tmp_path):
    def takes_a_generator(source=GENERATOR):
        return 1.0

    with pytest.raises(mitosis.BadParameter, match=r"^parameter 'source': .* pickling failed"):
        mitosis.run(takes_a_generator, store=tmp_path / "store")


def test_a_literal_whose_repr_fails_is_named_by_its_type(investigation):
    trial = mitosis.run(investigation.echo, {"value": NoRepr()}, debug=True)
    assert trial.params["value"].variant == "<test_errors.NoRepr: repr failed: RuntimeError>"


@pytest.mark.parametrize(
    "name",
    ["low\nMitosis-Status: forged", "low\x1b[2J", "low\x9b", "\u202ewol", "low\ud800", "a\tb"],
)
def test_a_variant_name_with_a_control_character_is_refused(investigation, name):
    lookup = {"noise": {name: 0.3}}
    with pytest.raises(
        mitosis.BadParameter, match=r"^parameter 'noise': the variant name .* holds"
    ):
        mitosis.run(investigation.sine, {"amplitude": 1, "noise": name}, lookup=lookup)
    assert branch_length("sine") == 0  # no lock was written


def test_a_parameter_or_step_name_with_a_control_character_is_refused(investigation, tmp_path):
    store = tmp_path / "store"
    with pytest.raises(mitosis.BadParameter, match=r"^parameter name 'x\\n\\nMitosis-Trial: 1'"):
        mitosis.run(open_ended, {"x\n\nMitosis-Trial: 1": 1}, store=store)
    with pytest.raises(mitosis.BadParameter, match=r"^step name 'fit\\x1b\]0;title\\x07'"):
        mitosis.run(
            [("make", investigation.make_data), ("fit\x1b]0;title\x07", investigation.fit)],
            {"make.noise": 0.1},
            store=store,
        )
    assert not store.exists()


def test_locks_and_renames_refuse_names_with_control_characters(investigation):
    from mitosis.model.records import VariantLock
    from mitosis.model.values import encode
    from mitosis.store.variants import lock_new

    mitosis.run(investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup)
    before = branch_length("sine")
    with Store.open() as st:
        for param, variant in (("noise", "hi\nMitosis-Lock: x"), ("noise\r", "hi")):
            with pytest.raises(mitosis.BadParameter, match="holds"):
                lock_new(st, "sine", [VariantLock(param, variant, encode(0.4))])
    with pytest.raises(mitosis.BadParameter, match=r"^the new name of noise='low' 'lo\\nw' holds"):
        mitosis.rename_variant("sine", "noise", "low", "lo\nw")
    assert branch_length("sine") == before
    assert [v.name for v in mitosis.variants("sine")] == ["low"]


def test_a_commit_message_holds_only_its_own_trailers(investigation):
    import attrs

    from mitosis.store.write import commit_message

    trial = mitosis.run(investigation.bare_number, {"x": 1.0})
    param = trial.params["x"]
    hostile = attrs.evolve(
        trial,
        params={"x\n\nMitosis-Status: ok": attrs.evolve(param, variant="1\nMitosis-Forged: 1")},
        rerun_of="abc\nMitosis-Forged: 2",
    )
    message = commit_message(hostile)
    trailers = git("interpret-trailers", "--parse", input=message).splitlines()
    assert [t.split(":")[0] for t in trailers] == [
        "Mitosis-Trial",
        "Mitosis-Experiment",
        "Mitosis-Code-Commit",
        "Mitosis-Status",
        "Mitosis-Rerun-Of",
    ]
    assert message.splitlines()[0].startswith("bare_number: x\\n\\nMitosis-Status: ok=1 ")
