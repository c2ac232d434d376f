"""The command line as a new user meets it (issue 19), and the options of mitosis 0.6 (issue 16):
each through the installed `mitosis` command, in a temporary investigation (the `lab` fixture)."""

from __future__ import annotations

import io
import types

from conftest import git

import mitosis

LEGACY_MODULE = """\
name = "my_exp"
lookup_dict = {"frequency": {"fast": 10, "slow": 1}}


def run(seed=0, amplitude=1, frequency=1):
    return {"main": amplitude * frequency, "metrics": {"seed": seed}}
"""


def add_and_commit(lab, name: str, text: str, *, append: bool = False) -> None:
    path = lab.root / name
    path.write_text((path.read_text() if append else "") + text)
    git("add", name, cwd=lab.root)
    git("commit", "-q", "-m", f"add {name}", cwd=lab.root)


def error(lab, *args: str) -> str:
    """The one-line error of a command that must fail."""
    proc = lab.cli(*args, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


# -- the options of mitosis 0.6 -----------------------------------------------------------


def test_the_readme_command_of_mitosis_0_6(lab):
    add_and_commit(lab, "my_exp.py", LEGACY_MODULE)
    steps = '\n[tool.mitosis.steps]\nmy_exp = ["my_exp:run", "my_exp:lookup_dict"]\n'
    text = (lab.root / "pyproject.toml").read_text().replace("\n[tool.mitosis.steps]\n", steps)
    add_and_commit(lab, "pyproject.toml", text)
    lab.cli("my_exp", "--param", "my_exp.frequency=slow", "--eval-param", "my_exp.amplitude=4")
    (trial,) = mitosis.trials("my_exp")
    assert trial.variants == {"amplitude": "4", "frequency": "slow", "seed": "0"}
    assert trial.main == 4


def test_a_module_of_mitosis_0_6_runs_with_m(lab, tmp_path):
    add_and_commit(lab, "my_exp.py", LEGACY_MODULE)
    out = lab.cli("-m", "my_exp", "-e", "seed=2", "-p", "frequency=fast").stdout
    (trial,) = mitosis.trials("my_exp")
    assert f"trial {trial.id} ok main=10" in out
    assert trial.variants == {"amplitude": "1", "frequency": "fast", "seed": "2"}
    lab.cli("run", "-m", "my_exp", "-e", "my_exp.seed=3")  # 0.6 took MODULE.name too
    assert mitosis.trials("my_exp")[-1].variants["seed"] == "3"
    assert "give it or experiment names, not both" in error(lab, "sine", "-m", "my_exp")
    assert "cannot import 'no_such_module'" in error(lab, "-m", "no_such_module")
    add_and_commit(lab, "half.py", "def run():\n    return 1\n")
    assert "this one lacks lookup_dict, name" in error(lab, "-m", "half")


def test_debug_anywhere_says_nothing_is_recorded(lab):
    for args in (["-d", "sine"], ["sine", "-d"], ["sine", "--debug"]):
        out = lab.cli(*args, "-p", "noise=low", "-e", "amplitude=2").stdout
        assert "\ndebug trial (not recorded) ok main=0.02" in out, out
    proc = lab.cli("-d", "run", "sine", "-p", "noise=low,high", "-e", "amplitude=2")
    assert "debug trials: nothing was recorded" in proc.stderr
    assert mitosis.trials() == []
    assert "-d/--debug goes with running an experiment" in error(lab, "-d", "log")


def test_config_after_the_experiment_and_the_trials_folder(lab, tmp_path):
    other = lab.root / "other.toml"
    module = lab.module
    other.write_text(f'[tool.mitosis.experiments]\nwave = "{module}:sine"\n')
    folder = tmp_path / "trials"
    lab.cli("wave", "-e", "amplitude=1", "-e", "noise=1", "--config", str(other), "-F", str(folder))
    lab.cli("-F", str(folder), "sine", "-p", "noise=low", "-e", "amplitude=1")
    assert sorted(t.experiment for t in mitosis.trials(store=folder)) == ["sine", "wave"]
    assert mitosis.trials() == []  # nothing went to the default store
    assert "wave" in lab.cli("--store", str(folder), "log").stdout  # --store before the command
    assert "wave" in lab.cli("log", "--store", str(folder)).stdout
    both = ("-F", str(folder), "--store", str(folder), "log")
    assert "give --store or -F/--trials-folder, not both" in error(lab, *both)


def test_the_shorthand_of_a_registered_function(lab):
    text = (lab.root / "pyproject.toml").read_text()
    entry = f'quick = "{lab.module}:bare_number"\n\n'
    add_and_commit(
        lab, "pyproject.toml", text.replace("[tool.mitosis.steps]", entry + "[tool.mitosis.steps]")
    )
    assert "ok main=6" in lab.cli("quick").stdout


# -- parameters ---------------------------------------------------------------------------


def test_a_parameter_without_p_or_e_is_named_as_one(lab):
    for args in (["run", "sine", "noise=low", "amplitude=4"], ["sine", "noise=low"]):
        message = error(lab, *args)
        assert "'noise=low' is a parameter, not an experiment: give it as -p noise=low" in message
        assert "-e noise=low" in message
    assert "'noise=low' is a parameter, not a command or an experiment" in error(lab, "noise=low")


def test_a_bare_word_is_not_a_literal(lab):
    message = error(lab, "run", "sine", "-p", "noise=low", "-e", "amplitude=four")
    assert "four is not a Python literal" in message and "ast." not in message
    assert """-e "amplitude='four'\"""" in message and "-p amplitude=four" in message


def test_a_parameter_given_twice_is_refused(lab):
    message = error(lab, "run", "sine", "-p", "noise=low", "-e", "amplitude=4", "-e", "amplitude=5")
    assert "amplitude is given twice (also -e amplitude=4)" in message
    assert "-e amplitude=4,5" in message
    message = error(lab, "run", "sine", "-p", "noise=low", "-e", "noise='low'", "-e", "amplitude=1")
    assert "noise is given twice (also -p noise=low)" in message
    assert mitosis.trials() == []


def test_e_gives_a_literal_and_p_a_variant_name(lab):
    lab.cli("run", "sine", "-p", "noise=low", "-e", "amplitude=1")
    failed = lab.cli("run", "sine", "-e", "noise='low'", "-e", "amplitude=1", check=False)
    assert failed.returncode == 1  # the function got the string 'low', not 0.01
    variant, literal = mitosis.trials("sine")
    assert variant.params["noise"].source == "variant" and variant.variants["noise"] == "low"
    assert literal.params["noise"].source == "literal" and literal.variants["noise"] == "'low'"


def test_literal_in_python(investigation, tmp_path):
    m = investigation
    trial = mitosis.run(
        m.echo,
        {"value": mitosis.literal("low")},
        lookup={"value": {"low": 1}},
        store=tmp_path / "store",
    )
    assert trial.value("value") == "low" and trial.variants["value"] == "'low'"
    named = mitosis.run(
        m.echo, {"value": "low"}, lookup={"value": {"low": 1}}, store=tmp_path / "store"
    )
    assert named.value("value") == 1 and named.variants["value"] == "low"


# -- reading -------------------------------------------------------------------------------


def test_where_says_how_to_compare(lab):
    lab.cli("run", "sine", "-p", "noise=low,high", "-e", "amplitude=1")
    message = error(lab, "log", "--where", "noise==low")
    assert "where 'noise==low': write one '=', as in noise=low" in message
    proc = lab.cli("log", "--where", "noise=medium")
    assert "no trials match" in proc.stderr
    assert (
        "no trial has noise=medium" in proc.stderr and "its trials have: high, low" in proc.stderr
    )
    assert "noise=low" not in lab.cli("log", "--where", "noise=high").stdout


def test_errors_name_command_line_fixes(lab):
    assert "see the ids with `mitosis log`" in error(lab, "show", "xyz")
    message = error(lab, "run", "sine", "-p", "noise=low")
    assert "Give it: -e amplitude=... on the command line" in message


# -- sharing -------------------------------------------------------------------------------


def test_pull_names_an_unknown_remote(lab, tmp_path):
    message = error(lab, "pull", "nowhere")
    assert "'nowhere' is no configured remote (remotes: none)" in message
    message = error(lab, "pull", "../nope.git")
    assert "'../nope.git' is no configured remote (remotes: none), a URL, a bundle" in message
    lab.cli("run", "sine", "-p", "noise=low", "-e", "amplitude=1")
    hub = tmp_path / "hub.git"
    git("init", "-q", "--bare", str(hub))
    git("remote", "add", "origin", str(hub), cwd=lab.root)
    lab.cli("push")
    message = error(lab, "pull", "nowhere")
    assert "'nowhere' is no configured remote (remotes: origin)" in message
    assert "nor an experiment of origin" in message
    assert "nor an experiment in this store" in error(lab, "push", "nowhere")
    assert "(remotes: origin)" in error(lab, "pull", "../nope.git")
    assert "sine" in lab.cli("pull", "sine").stdout  # an experiment of origin, as before


# -- progress ------------------------------------------------------------------------------


def test_sweep_progress_counts_interrupted_trials_apart():
    from mitosis.run.sweep import _Progress

    stream = io.StringIO()
    progress = _Progress(3, True, stream)
    for status in ("ok", "failed", "interrupted"):
        progress.finished(types.SimpleNamespace(id="abc", status=status))  # type: ignore[arg-type]
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("[3/3] 1 ok, 1 failed, 1 interrupted, 0 running")


def test_reuse_says_why_it_declines(lab):
    lab.cli("pipeline", "-p", "make_data.noise=low", "-e", "fit.alpha=1")
    (lab.root / "notes.txt").write_text("an untracked file")
    proc = lab.cli("pipeline", "-p", "make_data.noise=low", "-e", "fit.alpha=2", "--reuse")
    assert "not reusing the first steps (make_data) of pipeline: the code has uncommitted" in (
        proc.stderr
    )
    assert "making data" in proc.stdout


def on_a_terminal(lab, *args: str) -> tuple[str, str]:
    """Run the installed `mitosis ARGS` with stderr on a pseudo-terminal: (stdout, stderr)."""
    import os
    import pty
    import subprocess

    from conftest import console_script

    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [console_script(), *args],
        cwd=lab.root,
        stdout=subprocess.PIPE,
        stderr=child,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:  # the terminal's other side closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(parent)
    assert proc.returncode == 0, shown
    return out, shown.decode()


def test_push_and_pull_show_mitosis_progress_on_a_terminal_only(lab, tmp_path):
    lab.cli("run", "sine", "-p", "noise=low", "-e", "amplitude=1")
    hub = tmp_path / "hub.git"
    git("init", "-q", "--bare", str(hub))
    out, shown = on_a_terminal(lab, "push", str(hub))
    assert "sine" in out and "new" in out
    assert f"\r\x1b[Kpush {hub}: counting objects" in shown and shown.endswith("\r\x1b[K")
    assert "\n" not in shown  # one line, redrawn, then cleared
    proc = lab.cli("push", str(hub))
    assert proc.stderr == ""  # not a terminal: no progress at all


def test_browse_shows_its_progress_on_a_terminal_only(lab):
    lab.cli("run", "sine", "-p", "noise=low,high", "-e", "amplitude=1")
    out, shown = on_a_terminal(lab, "browse")
    assert "2 new trial page(s)" in out
    assert "\r\x1b[Kbrowse: sine: reading trials" in shown
    assert "\r\x1b[Kbrowse: sine: trial pages 0 of 2" in shown
    assert "browse: writing the index" in shown and shown.endswith("\r\x1b[K")
    assert lab.cli("browse").stderr == ""  # not a terminal: nothing


def test_browse_says_what_it_does_to_a_progress_callback(lab):
    lab.cli("run", "sine", "-p", "noise=low", "-e", "amplitude=1")
    said: list[str] = []
    mitosis.browse(lab.root / "site", progress=said.append)
    assert said == ["sine: reading trials", "sine: trial pages 0 of 1", "writing the index"]


def test_plot_and_rerun_show_their_progress_on_a_terminal_only(lab, tmp_path):
    lab.cli("run", "sine", "-p", "noise=low,high", "-e", "amplitude=1")
    figure = tmp_path / "sine.png"
    out, shown = on_a_terminal(lab, "plot", "sine", "--x", "noise", "-o", str(figure))
    assert f"wrote {figure}" in out and figure.stat().st_size > 0
    assert "\r\x1b[Kplot: reading trials" in shown and "\r\x1b[Kplot: drawing 2 trials" in shown
    assert f"\r\x1b[Kplot: writing {figure}" in shown and shown.endswith("\r\x1b[K")
    assert lab.cli("plot", "sine", "--x", "noise", "-o", str(figure)).stderr == ""
    (trial, *_) = mitosis.trials("sine", store=lab.root)
    out, shown = on_a_terminal(lab, "rerun", trial.id)
    assert f"reproduces trial {trial.id}" in out
    assert "\r\x1b[Krerun: rebuilding commit " in shown and ": 0 files written" in shown
    assert "\r\x1b[K" in shown.split("rerunning trial")[-1]  # cleared before the trial's output
    proc = lab.cli("rerun", trial.id)
    assert "rebuilding" not in proc.stderr  # not a terminal: only the command's own lines


def test_plot_and_rerun_say_what_they_do_to_a_progress_callback(lab, monkeypatch):
    lab.cli("run", "sine", "-p", "noise=low", "-e", "amplitude=1")
    monkeypatch.chdir(lab.root)
    said: list[str] = []
    mitosis.plot("sine", x="noise", store=lab.root, progress=said.append)
    assert said == ["reading trials", "drawing 1 trials"]
    said.clear()
    (trial,) = mitosis.trials("sine", store=lab.root)
    assert mitosis.rerun(trial.id, store=lab.root, progress=said.append).agrees
    assert said[0].startswith("rebuilding commit ") and said[0].endswith(": 0 files written")
    assert said[-1] == ""  # then the trial's own output
