"""Computed code inputs: each rule declares exactly the library files its script runs.

`scisr.codeinputs.code_files` reads imports with ast; these tests check it against Python itself:
a fresh interpreter imports the script (as Snakemake's job would, `scisr` installed in its environment) and the
`scisr` files in its `sys.modules` must be the declared set. Declared inputs are relative paths, so the plan does
not depend on where the checkout lives.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from scisr.codeinputs import code_files

SRC = ROOT / "src"
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))

# Modules loaded by name at run time, by the module that loads them. Importing a script does not
# load them, so once the loading module is imported the subprocess does what a job may do: run
# the readers' lazy table (`importlib.import_module` on first use), import the module torchrun
# starts (`python -m ...`) for multi-GPU training. If a new by-name load makes a test fail with
# "declared but not loaded", add what the job runs here.
RUN_TIME_LOADS = {
    "scisr.io.readers": (
        "from pathlib import Path\n"
        "from scisr.io.readers import READERS\n"
        "for reader in READERS.values():  # each imports its module, then fails on the missing file\n"
        "    try:\n        reader(Path('/nonexistent/image'))\n"
        "    except Exception:\n        pass"
    ),
    # the launcher, before and after the trainer's split into modules
    "scisr.train.loop": "import scisr.train.distributed",
    "scisr.train.launcher": "import scisr.train.distributed",
}


def loaded_scisr_files(script: Path) -> set[Path]:
    """The resolved files of the `scisr` modules a fresh interpreter holds after importing `script`."""
    lines = [
        "import importlib, json, sys",
        f"sys.path.insert(0, {str(script.parent)!r})",
        f"importlib.import_module({script.stem!r})",
        *[
            f"if {module!r} in sys.modules:\n" + textwrap.indent(code, "    ")
            for module, code in RUN_TIME_LOADS.items()
        ],
        "files = [m.__file__ for n, m in list(sys.modules.items()) if n == 'scisr' or n.startswith('scisr.')]",
        "print(json.dumps(files))",
    ]
    # no PYTHONPATH: scisr must come from its installation, as in a job's env (the venv, or a rule's conda env)
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {Path(f).resolve() for f in json.loads(result.stdout.splitlines()[-1])}


@pytest.mark.slow  # a fresh interpreter per script: 2-6 s each, about 30 s in all
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_declared_code_is_what_the_script_imports(script: Path) -> None:
    declared = set(code_files(script, SRC))
    loaded = loaded_scisr_files(script)
    assert loaded, f"{script.name}: imports no scisr module?"
    missing = sorted(str(p.relative_to(SRC.resolve())) for p in loaded - declared)
    extra = sorted(str(p.relative_to(SRC.resolve())) for p in declared - loaded)
    assert not missing, f"{script.name}: run but not declared (edits would not rerun the job): {missing}"
    assert not extra, f"{script.name}: declared but not loaded: {extra}"


def test_every_declared_file_is_inside_the_package() -> None:
    package = (SRC / "scisr").resolve()
    for script in SCRIPTS:
        for path in code_files(script, SRC):
            assert path.is_file() and path.is_relative_to(package), (script.name, path)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_walk_follows_what_python_would_run_and_nothing_else(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "pkg" / "__init__.py", "")
    write(src / "pkg" / "sub" / "__init__.py", "from .leaf import f\n")
    write(src / "pkg" / "sub" / "leaf.py", "def f():\n    from ..deferred import g\n")
    write(src / "pkg" / "deferred.py", "import logging\nlog = logging.getLogger('pkg.logged')\n")
    write(src / "pkg" / "logged.py", "")  # only named as a logger: never imported
    write(src / "pkg" / "typing_only.py", "")
    write(src / "pkg" / "byname.py", "")
    write(src / "pkg" / "unused.py", "")
    write(
        src / "pkg" / "main.py",
        "from typing import TYPE_CHECKING\n"
        "import importlib\n"
        "from pkg.sub import f\n"
        "if TYPE_CHECKING:\n    from pkg import typing_only\n"
        "def load():\n    return importlib.import_module('pkg.byname')\n",
    )
    script = tmp_path / "script.py"
    write(script, "import numpy\nfrom pkg.main import load\n")
    found = {p.relative_to(src.resolve()).as_posix() for p in code_files(script, src, package="pkg")}
    assert found == {
        "pkg/__init__.py",
        "pkg/main.py",
        "pkg/sub/__init__.py",
        "pkg/sub/leaf.py",
        "pkg/deferred.py",
        "pkg/byname.py",
    }


def test_a_function_named_in_from_import_is_not_a_module(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "pkg" / "__init__.py", "def helper():\n    pass\n")
    script = tmp_path / "script.py"
    write(script, "from pkg import helper\n")
    assert [p.name for p in code_files(script, src, package="pkg")] == ["__init__.py"]


def test_code_inputs_are_relative_and_name_the_same_files(tmp_path: Path) -> None:
    from scisr.codeinputs import code_inputs

    script = ROOT / "scripts" / "score.py"
    declared = code_inputs(script, SRC, start=ROOT)
    assert declared and not any(Path(p).is_absolute() for p in declared)
    assert all(p.startswith("src/scisr/") for p in declared)
    assert [(ROOT / p).resolve() for p in declared] == code_files(script, SRC)
    elsewhere = code_inputs(script, SRC, start=tmp_path)  # a working directory outside the checkout still works
    assert [(tmp_path / p).resolve() for p in elsewhere] == code_files(script, SRC)


def test_the_workflow_declares_code_inputs_relative_to_the_working_directory(snakemake_exe: str) -> None:
    """The dry run's inputs name src/scisr/... files without the checkout's absolute path."""
    result = subprocess.run(
        [snakemake_exe, "--dry-run", "--forceall", "--cores", "1", "results/score/bicubic/mri/fold1.tsv"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    inputs = [line for line in result.stdout.splitlines() if line.strip().startswith("input:")]
    code = [name.strip() for line in inputs for name in line.split(":", 1)[1].split(",") if "scisr/" in name]
    assert "src/scisr/metrics.py" in code
    assert not [name for name in code if name.startswith("/")]
