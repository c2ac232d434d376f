"""The folders are the layers: the import contracts hold, no function-level import hides a cycle,
and the trial process runs on the standard library alone."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import mitosis
from tests.conftest import bare_modules

PACKAGE = Path(mitosis.__file__).parent
LAYERS = ("cli", "site", "run", "store", "model")


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports")
    assert lint is not None, "import-linter is part of the test extra: pip install -e '.[test]'"
    proc = subprocess.run([lint], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_every_module_lives_in_the_folder_of_its_layer():
    # _typing.py: its name is mitosis 0.6's (`from mitosis._typing import ExpResults`)
    outside = ("__init__.py", "__main__.py", "exceptions.py", "_version.py", "_typing.py")
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in outside)
    assert loose == [], f"put these in a layer's folder ({', '.join(LAYERS)}): {loose}"
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == (
        sorted(LAYERS)
    )


def _function_level_imports() -> list[tuple[str, int, str]]:
    """``(file, line, text)`` of each import of a mitosis module made inside a function."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (
                    node.level > 0 or (node.module or "").startswith("mitosis")
                ):
                    found.append(
                        (str(path.relative_to(PACKAGE)), node.lineno, lines[node.lineno - 1])
                    )
    return found


def test_function_level_imports_are_only_for_start_up_speed_and_say_so():
    imports = _function_level_imports()
    assert imports, "the command line loads each command's modules on first need"
    by_function: dict[tuple[str, int], list[str]] = {}
    for file, line, text in imports:
        # a function's imports stand together: group them by file and nearby lines
        key = next(((f, n) for (f, n) in by_function if f == file and 0 < line - n <= 3), None)
        by_function.setdefault(key or (file, line), []).append(text)
    unexplained = [
        f"{file}:{line}"
        for (file, line), texts in by_function.items()
        if not any("# on first need" in t for t in texts)
    ]
    assert unexplained == [], (
        "an import inside a function must be for start-up speed and say so "
        f"('# on first need: ...'), never to dodge a cycle: {unexplained}"
    )


def test_the_trial_process_imports_no_mitosis_module(investigation):
    trial = mitosis.run(investigation.loaded_modules)
    loaded = set(trial.results()["data"])
    added = loaded - bare_modules() - {investigation.__name__}
    assert [m for m in added if "mitosis" in m] == []  # portable.py is loaded by its path
    foreign = sorted(m for m in added if m.split(".")[0] not in sys.stdlib_module_names)
    assert foreign == [], f"the trial process loaded modules beyond the standard library: {foreign}"


def test_mitosis_run_is_the_function_whatever_is_imported_first():
    # the folder mitosis/run/ and the function mitosis.run share a name: the function wins
    script = (
        "import mitosis.run.sweep, mitosis.run.config, mitosis;"
        "print(mitosis.run.__module__, callable(mitosis.run))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["mitosis.run.trial", "True"]
