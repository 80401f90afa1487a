"""One lock: constraints.txt. pyproject.toml and environment.yml must agree with it."""

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{line!r} is not pinned exactly"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def _constraints():
    return _pins((ROOT / "constraints.txt").read_text().splitlines())


def _environment_pip():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip_section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return env, pip_section


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_torch_is_pinned_to_the_cpu_build_everywhere():
    assert _constraints()["torch"] == "2.13.0"
    assert "torch==2.13.0" in _pyproject()["dependencies"]
    assert "torch==2.13.0" in _environment_pip()[1]


def test_every_dependency_is_locked_and_satisfied():
    pins = _constraints()
    project = _pyproject()
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{text} does not admit the locked {pins[name]}"


def test_environment_yml_mirrors_the_lock():
    env, pip_section = _environment_pip()
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])
    mirrored = _pins(pip_section)
    pins = _constraints()
    for name, version in mirrored.items():
        assert pins.get(name) == version, f"environment.yml pins {name}=={version}, constraints.txt has {pins.get(name)}"
    project = _pyproject()
    direct = project["dependencies"] + project["optional-dependencies"]["test"]
    missing = {canonicalize_name(Requirement(r).name) for r in direct} - set(mirrored)
    assert not missing, f"environment.yml lacks the direct dependencies {sorted(missing)}"
    assert any(line.startswith("-e .") for line in pip_section), "environment.yml must install the course package"


def test_installed_versions_match_the_lock():
    from importlib.metadata import version

    pins = _constraints()
    for name in ("numpy", "torch", "jupyterlab", "plotly", "nbval", "jupytext"):
        installed = version(name).split("+")[0]
        assert installed == pins[name], f"{name} {installed} is installed but the lock says {pins[name]}"
