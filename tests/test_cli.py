"""The command line, through click's CliRunner and through the installed `mitosis` command (and
`python -m mitosis` once), in a temporary investigation repository with its own pyproject.toml."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import console_script, git

import mitosis
from mitosis.cli import main
from mitosis.store.repo import Store


def ok(runner, *args: str) -> str:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(runner, *args: str, code: int = 1) -> str:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_run_prints_the_trial_and_records_it(lab, runner):
    out = ok(runner, "run", "sine", "-p", "noise=low", "-e", "amplitude=4")
    (trial,) = mitosis.trials("sine")
    assert f"trial {trial.id} ok main=0.04 err=0.005 n=3" in out
    assert trial.variants == {"amplitude": "4", "noise": "low"}
    assert "sine: amplitude=4 noise=low -> main=0.04 (ok)" in git("log", "mitosis/sine")


def test_earlier_syntax_experiment_as_command_with_step_prefixes(lab, runner):
    ok(runner, "sine", "-p", "sine.noise=high", "-e", "sine.amplitude=2")
    ok(runner, "legacy", "-p", "legacy.noise=low", "-e", "legacy.amplitude=1")
    assert [t.main for t in mitosis.trials("sine")] == [1.0]
    assert [t.main for t in mitosis.trials("legacy")] == [0.01]


def test_untracked_marks_and_literals(lab, runner):
    ok(runner, "run", "echo", "-e", "value={'a': (1, 2)}", "-e", "+other=[1, 'x']")
    (trial,) = mitosis.trials("echo")
    assert trial.value("value") == {"a": (1, 2)}
    assert trial.untracked["other"].variant == "[1, 'x']"
    ok(runner, "run", "sine", "-p", "noise=low", "-e", "amplitude=1", "-e", "gpu=3")
    assert mitosis.trials("sine")[0].untracked["gpu"].variant == "3"  # registered as untracked


def test_comma_lists_run_the_product_with_a_summary(lab, runner):
    out = ok(runner, "run", "sine", "-p", "noise=low,high", "-e", "amplitude=1,(2)", "-j", "2")
    assert len(mitosis.trials("sine")) == 4
    table = out[out.index("id  ") :]
    assert table.count(" ok ") == 4 and "noise=high amplitude=2" in table


def test_allow_code_evaluates_expressions(lab, runner):
    out = fails(runner, "run", "sine", "-p", "noise=low", "-e", "amplitude=2**3")
    assert "Error: -e amplitude=2**3" in out and "--allow-code" in out
    ok(runner, "run", "sine", "-p", "noise=low", "-e", "amplitude=2**3", "--allow-code")
    assert mitosis.trials("sine")[0].main == pytest.approx(0.08)


def test_failed_trial_exit_code_and_its_traceback(lab):
    proc = lab.cli("run", "fails", "-e", "x=7", check=False)
    assert proc.returncode == 1
    (trial,) = mitosis.trials("fails")
    assert "Traceback" in proc.stderr and "ValueError: bad x 7" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    hint = f"see it with `mitosis show {trial.id}`"
    assert last == f"Error: trial {trial.id} failed: ValueError: bad x 7; {hint}"


def test_sweep_with_failures_says_how_many(lab, runner):
    out = ok(runner, "run", "echo", "-e", "value=1,2")
    assert "Error" not in out and out.count(" ok ") == 2
    out = fails(runner, "run", "fails", "-e", "x=1,2,3", code=3)  # the exit status: how many
    assert "3 of 3 trials did not succeed" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "nope"], "unknown experiment 'nope' (registered: echo, fails, fit, legacy, log"),
        (["nope"], "'nope' is neither a command nor a registered experiment"),
        (["run", "sine", "-p", "noise=low", "-e", "nosie=1"], "sine has no parameter 'nosie'"),
        (["run", "sine", "-p", "noise=medium", "-e", "amplitude=1"], "known variants: high, low"),
        (["run", "sine", "-p", "amplitude=4", "-p", "noise=low"], "give its value with -e"),
        (["run", "sine", "-e", "amplitude=1+", "-p", "noise=low"], "1+ is not a Python literal"),
        (["run", "sine", "-e", "amplitude"], "write it as -e [+]name=value"),
        (["run", "sine", "-p", "other.noise=low"], "addresses step 'other'"),
        (["run", "sine", "-p", "noise=low"], "needs a value for 'amplitude'"),
        (["show", "abcd"], "no trial in the store"),
        (["show", "xyz"], "is not a trial id: give 4 or more hex digits"),
        (["log", "sien"], "no experiment 'sien'"),
        (["variants", "sien"], "no experiment 'sien'"),
    ],
)
def test_user_errors_name_the_thing_and_the_fix(lab, runner, args, expected):
    out = fails(runner, *args)
    assert expected in out and "Traceback" not in out


def test_store_that_is_not_a_repository(lab, runner, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    out = fails(runner, "log", "--store", str(plain))
    assert f"the store '{plain}' is not a git repository" in out and "git init" in out


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("sine = 3", "[tool.mitosis.experiments] sine must be a table like sine = { run ="),
        ('sine = { run = "modfn" }', 'run must be a string "module:name"'),
        ('sine = { run = "m:f", lookups = "m:l" }', "has unknown keys ['lookups']"),
        ('sine = { run = "m:f", untracked = "gpu" }', "untracked must be a list"),
        ('sine = { run = "nomodule_here:f" }', "cannot import 'nomodule_here:f'"),
    ],
)
def test_malformed_pyproject_names_the_key(lab, runner, table, expected):
    (lab.root / "pyproject.toml").write_text(f"[tool.mitosis.experiments]\n{table}\n")
    out = fails(runner, "run", "sine")
    assert expected in out


def test_malformed_steps_table_and_missing_config(lab, runner, tmp_path):
    (lab.root / "pyproject.toml").write_text('[tool.mitosis.steps]\nold = "m:f"\n')
    assert "old = [" in fails(runner, "run", "old")
    out = fails(runner, "--config", str(tmp_path / "missing.toml"), "experiments")
    assert "no such configuration file" in out and "missing.toml" in out


def test_config_option_and_store_setting(lab, runner, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = lab.root / "pyproject.toml"
    config.write_text(
        config.read_text().replace("[tool.mitosis]\n", '[tool.mitosis]\nstore = "trials.git"\n')
    )
    os.chdir(elsewhere)
    ok(runner, "--config", str(config), "run", "log", "-e", "x=1.5")
    assert (lab.root / "trials.git").is_dir()
    assert "log: x=1.5 -> main=4.5 (ok)" in git("log", "mitosis/log", cwd=lab.root / "trials.git")


def make_trials(runner) -> list[mitosis.Trial]:
    ok(runner, "run", "sine", "-p", "noise=low,high", "-e", "amplitude=1,2", "-j", "1")
    ok(runner, "run", "log", "-e", "x=1")
    return mitosis.trials()


def test_log_table_filters_sorting_and_limits(lab, runner):
    made = make_trials(runner)
    out = ok(runner, "log", "sine")
    lines = out.splitlines()
    assert lines[0].split() == [
        "id",
        "experiment",
        "started",
        "status",
        "amplitude",
        "noise",
        "main",
        "err",
        "n",
        "commit",
    ]
    assert len(lines) == 5 and "log" not in out
    newest_first = [line.split()[0] for line in lines[1:]]
    assert newest_first == [t.id for t in reversed(made) if t.experiment == "sine"]
    commit = git("rev-parse", "HEAD").strip()[:10]
    assert all(line.endswith(commit) for line in lines[1:])
    out = ok(runner, "log", "sine", "--where", "noise=low and main>0.01")
    assert len(out.splitlines()) == 2 and " 2 " in out
    out = ok(runner, "log", "sine", "--where", "noise!=low", "--where", "amplitude=1")
    assert len(out.splitlines()) == 2 and "high" in out
    out = ok(runner, "log", "--sort", "main", "--limit", "2")
    assert [line.split()[-4] for line in out.splitlines()[1:]] == ["0.01", "0.02"]
    assert len(ok(runner, "log").splitlines()) == 6


def test_log_json_and_csv(lab, runner):
    made = make_trials(runner)
    records = json.loads(ok(runner, "log", "--json"))
    assert [r["id"] for r in records] == [t.id for t in reversed(made)]
    first = records[-1]
    assert {"id", "experiment", "status", "started", "params", "main", "metrics"} <= set(first)
    assert first["params"] == {"amplitude": "1", "noise": "low"} and first["main"] == 0.01
    rows = ok(runner, "log", "sine", "--csv").splitlines()
    assert rows[0] == "id,experiment,started,status,amplitude,noise,main,err,n,commit"
    assert rows[-1].startswith(f"{made[0].id},sine,{made[0].started},ok,1,low,0.01,0.005,3,")
    assert "no trials match" in ok(runner, "log", "--where", "main>100")
    assert "--json or --csv" in fails(runner, "log", "--json", "--csv")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("noise~low", "write NAME OP VALUE"),
        ("nosie=low", "no parameter or metric 'nosie'; the trials have:"),
        ("main<low", "< compares numbers, and 'low' is not one"),
    ],
)
def test_log_where_errors(lab, runner, where, expected):
    make_trials(runner)
    assert expected in fails(runner, "log", "sine", "--where", where)


def test_log_sort_error(lab, runner):
    make_trials(runner)
    assert "--sort: no parameter or metric 'mian'" in fails(runner, "log", "--sort", "mian")


def test_show_text_and_json(lab, runner):
    made = make_trials(runner)
    trial = made[0]
    out = ok(runner, "show", trial.id[:6])
    assert f"trial      {trial.id}  sine  ok" in out
    assert "noise = low = 0.01  (variant)" in out and "amplitude = 1  (literal)" in out
    assert f"mitosis/sine:{trial.path}/output.log" in out
    assert f"mitosis/sine:{trial.path}/results/sine.dill" in out
    record = json.loads(ok(runner, "show", trial.id, "--json"))
    assert record["id"] == trial.id and record["environment"]["python"]
    assert record["paths"]["output.log"] == f"mitosis/sine:{trial.path}/output.log"
    assert git("show", record["paths"]["output.log"]).startswith("sine running")


def test_diff_parameters_results_and_packages(lab, runner):
    made = make_trials(runner)
    a, b = made[0], made[3]
    out = ok(runner, "diff", a.id, b.id)
    assert "parameters  amplitude" in out and "noise" in out and "low (0.01)" in out
    assert "results" in out and "main" in out
    assert "packages" not in out
    # a copy of b recorded on another machine, with other packages
    requirements = b.read("requirements.txt").decode().splitlines()
    changed = [line for line in requirements if not line.startswith("attrs==")]
    changed = [
        line.replace(line.split("==")[1], "0.0.1") if line.startswith("click==") else line
        for line in changed
    ] + ["newpkg==1.0"]
    clone = "ffff" + b.id[4:]
    files = {f"trials/ff/{clone}/{name}": b.read(name) for name in b.files}
    files[f"trials/ff/{clone}/requirements.txt"] = "\n".join(changed).encode() + b"\n"
    files[f"trials/ff/{clone}/trial.json"] = b.read("trial.json").replace(
        b.id.encode(), clone.encode()
    )
    with Store.open(lab.root) as store:
        store.commit("sine", files, "copy\n")
    out = ok(runner, "diff", b.id, clone)
    assert "packages  attrs" in out and "(none)" in out
    assert "click" in out and "==0.0.1" in out
    assert "newpkg" in out
    assert f"trials {a.id} and {a.id} do not differ" in ok(runner, "diff", a.id, a.id)


def test_variants_and_experiments(lab, runner):
    make_trials(runner)
    out = ok(runner, "variants", "sine")
    lines = [line.split() for line in out.splitlines()]
    assert lines == [
        ["param", "variant", "value", "trials"],
        ["noise", "high", "0.5", "2"],
        ["noise", "low", "0.01", "2"],
    ]
    assert "no locked variants in sine for amplitude" in ok(runner, "variants", "sine", "amplitude")
    out = ok(runner, "experiments")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["sine"] == [f"{lab.module}:sine", "4"]
    assert rows["log"] == [f"{lab.module}:bare_number", "1"]
    assert rows["fails"] == [f"{lab.module}:fails", "0"]


def test_every_command_through_a_real_process(lab):
    assert "Commands:" in lab.cli("--help").stdout
    assert "mitosis, version" in lab.cli("--version").stdout
    out = lab.cli("run", "sine", "-p", "noise=low", "-e", "amplitude=3").stdout
    trial_id = out.split("trial ")[1].split()[0]
    assert "sine running amplitude=3 noise=0.01" in out
    lab.cli("sine", "-p", "sine.noise=high", "-e", "sine.amplitude=3")
    other = mitosis.trials("sine")[-1].id
    assert trial_id in lab.cli("log").stdout
    assert trial_id in lab.cli("show", trial_id).stdout
    assert "noise" in lab.cli("diff", trial_id, other).stdout
    assert "high" in lab.cli("variants", "sine").stdout
    assert "legacy" in lab.cli("experiments").stdout


def test_shell_completion(lab):
    def complete(*words: str) -> list[str]:
        env = {
            **os.environ,
            "_MITOSIS_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(["mitosis", *words]),
            "COMP_CWORD": str(len(words)),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "mitosis"],
            env=env,
            cwd=lab.root,
            capture_output=True,
            text=True,
            check=True,
        )
        return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]

    assert complete("run", "s") == ["sine"]
    assert complete("run", "sine", "-p", "no") == ["noise="]
    assert complete("run", "sine", "-p", "noise=") == ["noise=low", "noise=high"]
    assert complete("run", "sine", "-e", "+amp") == ["+amplitude="]


def test_steps_from_the_command_line_with_reuse(lab, runner):
    out = ok(runner, "run", "make_data", "fit", "-p", "make_data.noise=low", "-e", "fit.alpha=2")
    (first,) = mitosis.trials("make_data+fit")
    assert f"trial {first.id} ok main=0.08" in out
    assert "step make_data ok main=4" in out and "step fit ok main=0.08" in out
    out = ok(runner, "pipeline", "-p", "make_data.noise=low", "-e", "fit.alpha=3", "--reuse")
    assert "making data" not in out
    (second,) = mitosis.trials("pipeline")
    assert f"step make_data ok main=4 (reused from {first.id})" in out
    assert second.steps[0].reused_from == first.id and second.main == pytest.approx(0.12)
    shown = ok(runner, "show", second.id)
    assert f"steps      step make_data ok main=4 (reused from {first.id})" in shown
    header = ok(runner, "log", "pipeline").splitlines()[0].split()
    assert {"make_data.noise", "fit.alpha", "make_data.points", "fit.n"} <= set(header)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "noise=low"], "address the parameter as step.name (e.g. -p fit.noise=low)"),
        (["-p", "model.noise=low"], "addresses step 'model', which is not in the experiment"),
        (["-p", "fit.alpha=1"], "'alpha' has no lookup table in 'fit'"),
    ],
)
def test_step_syntax_errors(lab, runner, args, expected):
    assert expected in fails(runner, "run", "make_data", "fit", *args)


def test_malformed_pipelines(lab, runner):
    config = lab.root / "pyproject.toml"
    base = config.read_text()
    config.write_text(base.replace('["make_data", "fit"]', '["make_data", "nope"]'))
    assert "step 'nope' is not a registered function" in fails(runner, "experiments")
    config.write_text(base.replace('["make_data", "fit"]', '"make_data"'))
    assert 'pipeline = { steps = ["first_experiment"' in fails(runner, "experiments")
    config.write_text(base)
    assert "is itself a chain of steps" in fails(runner, "run", "pipeline", "fit")


def test_where_skips_trials_without_a_number(lab, runner):
    make_trials(runner)
    fails(runner, "run", "fails")
    out = ok(runner, "log", "--where", "main<0.015")
    assert len(out.splitlines()) == 2 and "0.01" in out


def test_reading_commands_never_create_a_store(lab, runner, tmp_path):
    typo = tmp_path / "typo"
    for args in (["log"], ["show", "abcd"], ["variants", "sine"]):
        out = fails(runner, *args, "--store", str(typo))
        assert f"there is no store at {typo}" in out
    assert not typo.exists()
    assert "sine" in ok(runner, "experiments", "--store", str(typo))
    assert not typo.exists()


def test_sweep_checks_every_combination_before_running_any(lab, runner):
    out = fails(runner, "run", "sine", "-p", "noise=low,medium", "-e", "amplitude=1")
    assert "unknown variant 'medium'" in out
    assert git("for-each-ref", "refs/heads/mitosis") == ""


def test_registration_keeps_what_the_decorator_attached(lab, runner):
    (lab.root / "decorated.py").write_text(
        "import mitosis\n"
        "@mitosis.experiment(lookup={'noise': {'low': 0.25}}, untracked=['gpu'])\n"
        "def wave(noise: float, gpu: int = 0):\n"
        "    return noise\n"
    )
    config = lab.root / "pyproject.toml"
    registered = 'wave = { run = "decorated:wave" }\n\n[tool.mitosis.steps]'
    config.write_text(config.read_text().replace("[tool.mitosis.steps]", registered))
    ok(runner, "run", "wave", "-p", "noise=low", "-e", "gpu=1")
    (trial,) = mitosis.trials("wave")
    assert trial.main == 0.25 and "gpu" in trial.untracked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[tool.mitosis\n", "cannot read"),
        ("[tool]\nmitosis = 3\n", "[tool.mitosis] in"),
        ("[tool.mitosis]\nstores = '.'\n", "has unknown keys ['stores']"),
        ("[tool.mitosis]\nstore = 3\n", "store in"),
        ("[tool.mitosis]\nexperiments = 3\n", "[tool.mitosis.experiments] in"),
    ],
)
def test_malformed_tool_mitosis_table(lab, runner, text, expected):
    (lab.root / "pyproject.toml").write_text(text)
    out = fails(runner, "--config", str(lab.root / "pyproject.toml"), "experiments")
    assert expected in out and "Traceback" not in out


def test_a_metric_named_like_a_parameter_gets_its_own_header(lab, runner):
    ok(runner, "run", "make_data", "-p", "noise=low", "-e", "points=3")
    header = ok(runner, "log", "make_data").splitlines()[0].split("  ")
    assert "points (metric)" in [h.strip() for h in header if h.strip()]


def test_comma_lists_split_only_at_the_top_level():
    from mitosis.cli.args import split_top_level as _split_top_level

    assert _split_top_level("1, (2, 3), 'a,b', \"c,d\", [4, {5: 6}]") == [
        "1",
        "(2, 3)",
        "'a,b'",
        '"c,d"',
        "[4, {5: 6}]",
    ]
    assert _split_top_level("low") == ["low"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_sync_progress_is_one_line_on_a_terminal_and_nothing_elsewhere(monkeypatch):
    from mitosis.cli.sync import _Progress

    for stream in (io.StringIO(), Terminal()):
        monkeypatch.setattr(sys, "stderr", stream)
        progress = _Progress("pull origin")
        with progress:
            for message in (b"counting objects: 3\r", b"checking deltas: 0/10", b"found 0\n"):
                progress.remote(message)
        shown = stream.getvalue()
        if isinstance(stream, Terminal):
            assert shown == (
                "\r\x1b[Kpull origin: counting objects: 3\r\x1b[Kpull origin: checking deltas: 0/10"
                "\r\x1b[Kpull origin: found 0\r\x1b[K"
            )
        else:
            assert shown == ""


def installed(*args: str, cwd: Path) -> str:
    """Run the installed `mitosis` console script, as a user runs it; its stdout and stderr."""
    proc = subprocess.run([console_script(), *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout + proc.stderr


def test_recorded_control_characters_never_reach_the_terminal(investigation, tmp_path):
    from mitosis.model.text import UNSAFE

    m, store = investigation, tmp_path / "store"
    ok = mitosis.run(m.terminal_trap, {"note": m.Trap()}, store=store)
    with pytest.raises(mitosis.TrialFailed) as failed:
        mitosis.run(m.terminal_trap, {"fail": True}, store=store)
    # A record as a pull could bring it: control characters in every field a command shows.
    record = json.loads(ok.read("trial.json"))
    hostile_id = "abcdef123456"
    record.update(
        id=hostile_id,
        host=m.TRAP,
        user=f"bob\n{m.TRAP}",
        function=m.TRAP,
        error=f"Traceback\n  {m.TRAP}\nValueError: {m.TRAP}",
        status="failed",
    )
    record["params"] = {"note": {**record["params"]["note"], "variant": f"a\n{m.TRAP}"}}
    record["code"]["branch"] = m.TRAP
    lock = {"param": "note", "variant": f"lo{m.TRAP}", "value": 1, "type": "int", "dill": None}
    lock["fingerprint"] = "sha256:" + "0" * 64
    from mitosis.model.layout import trial_dir, variant_path

    with Store.open(store) as st:
        st.commit(
            "terminal_trap",
            {
                f"{trial_dir(hostile_id)}/trial.json": json.dumps(record).encode(),
                variant_path("note", lock["variant"]) + ".json": json.dumps(lock).encode(),
            },
            "terminal_trap: as pulled\n",
        )
    where = ("--store", str(store))
    outputs = {
        "show ok": installed("show", ok.id, *where, cwd=tmp_path),
        "show failed": installed("show", failed.value.trial_id, *where, cwd=tmp_path),
        "show hostile": installed("show", hostile_id, *where, cwd=tmp_path),
        "log": installed("log", *where, cwd=tmp_path),
        "log csv": installed("log", "terminal_trap", "--csv", *where, cwd=tmp_path),
        "diff": installed("diff", ok.id, hostile_id, *where, cwd=tmp_path),
        "variants": installed("variants", "terminal_trap", *where, cwd=tmp_path),
        "experiments": installed("experiments", *where, cwd=tmp_path),
        "error": installed(  # an error message quoting the store's variant names
            "variants", "terminal_trap", "note", "--rename", "nope", "new", *where, cwd=tmp_path
        ),
    }
    for command, out in outputs.items():
        unsafe = {
            c for c in UNSAFE.findall(out) if c != "\n" and (c, command) != ("\t", "show failed")
        }
        assert unsafe == set(), (command, out)
        hostile_shown = "\\x1b" in out or "\\u202e" in out
        assert hostile_shown or command == "experiments", (command, out)
    shown_error = outputs["show failed"].split("\nerror\n", 1)[1]
    assert "boom \\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\u202eevil\\u2066\\x9b31m\\x7f\\rover" in (
        shown_error
    )
    assert "\n  second line\twith a tab\n" in shown_error  # a block of lines stays lines
    hostile = outputs["show hostile"]
    assert "by bob\\n\\x1b]0;owned" in hostile and "\nMitosis" not in hostile
    for flag in ("show", "log"):  # JSON: escaped as JSON, so the values read back exactly
        args = ("show", "--json", hostile_id) if flag == "show" else ("log", "--json")
        out = installed(*args, *where, cwd=tmp_path)
        assert not {c for c in UNSAFE.findall(out) if c != "\n"}, out
        parsed = json.loads(out)
        found = parsed if flag == "show" else next(t for t in parsed if t["id"] == hostile_id)
        if flag == "log":
            assert found["params"] == {"note": f"a\n{m.TRAP}"}
        else:
            assert found["host"] == m.TRAP and found["error"].endswith(m.TRAP)


def test_a_remotes_progress_is_shown_without_its_escape_sequences(monkeypatch):
    from mitosis.cli.sync import _Progress

    monkeypatch.setattr(sys, "stderr", Terminal())
    progress = _Progress("pull origin")
    with progress:
        progress.remote(b"Counting objects: 50% \x1b]0;owned\x07\x1b[2J\r")
    shown = sys.stderr.getvalue()
    assert shown == "\r\x1b[Kpull origin: Counting objects: 50% \\x1b]0;owned\\x07\\x1b[2J\r\x1b[K"
