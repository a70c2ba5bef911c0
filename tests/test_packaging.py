"""The distribution as PyPI would get it: sdist + wheel build, `twine check`, and the wheel installed into a
clean virtualenv (with its dependencies) where `import locust_sink` and the `locust-sink` command work."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_sdist_and_wheel_pass_twine_check(dist):
    wheels = list(dist.glob("locust_sink-*.whl"))
    sdists = list(dist.glob("locust_sink-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "locust_sink/plugin.py" in names and "locust_sink/py.typed" in names
    assert "locust_sink/report/templates/report.html.jinja" in names  # the HTML report's page
    assert any(n.startswith("locust_sink/kibana/") and n.endswith(".ndjson") for n in names), names
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_installs_into_a_clean_virtualenv(dist, tmp_path):
    wheel = next(dist.glob("locust_sink-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel), "elasticsearch>=8.19,<9"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    code = (
        "import locust, locust_sink, locust_sink.plugin as p; "
        "assert p._registered, 'import with locust loaded registers the plugin'; print(locust_sink.__version__)"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version = out.stdout.strip()
    cli = subprocess.run(
        [str(env_dir / "bin" / "locust-sink"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0 and cli.stdout.strip() == f"locust-sink {version}", cli.stdout + cli.stderr
