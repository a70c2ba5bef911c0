"""The distribution as a user gets it: sdist + wheel build, `twine check`, and the built wheel installed into a
bare virtualenv with nothing but its declared dependencies (`pip install locust-sink`, no pins, no test
extras), where a real `locust` run with `import locust_sink` records every request into the real
Elasticsearch and the `locust-sink` command works."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
import venv
import zipfile
from pathlib import Path

import pytest
from e2e_util import assert_matches, es_landed, locust_truth
from helpers import es_client, locust_env

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).parent / "locustfiles" / "e2e.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def bare_venv(dist, tmp_path_factory) -> Path:
    """A virtualenv holding the built wheel and what pip resolves for it, nothing else."""
    wheel = next(dist.glob("locust_sink-*.whl"))
    env_dir = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return env_dir


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


def test_bare_install_imports_and_has_the_cli(bare_venv):
    py = bare_venv / "bin" / "python"
    code = (
        "import locust, elasticsearch, locust_sink, locust_sink.plugin as p; "
        "assert p._registered, 'import with locust loaded registers the plugin'; "
        "print(locust_sink.__version__, elasticsearch.__versionstr__)"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120, cwd=bare_venv)
    assert out.returncode == 0, out.stderr
    version, client = out.stdout.split()
    assert client.startswith("8."), f"pip resolved elasticsearch {client}, which cannot talk to Elasticsearch 8"
    cli = subprocess.run([str(bare_venv / "bin" / "locust-sink"), "--version"], capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.strip() == f"locust-sink {version}", cli.stdout + cli.stderr


def test_bare_install_records_a_real_run_into_elasticsearch(bare_venv, tmp_path, es_url, httpbin_url):
    """What a new user does: `pip install locust-sink`, `import locust_sink`, `locust ... --es-url`."""
    prefix = f"tpkg-{uuid.uuid4().hex[:8]}"
    stats = tmp_path / "stats"
    locustfile = tmp_path / "locustfile.py"
    where = "import pathlib\nimport locust_sink\n\npathlib.Path('where.txt').write_text(locust_sink.__file__)\n"
    locustfile.write_text(LOCUSTFILE.read_text() + "\n" + where)
    cmd = [
        str(bare_venv / "bin" / "locust"), "-f", str(locustfile), "--headless", "-u", "6", "-r", "6", "-t", "5s",
        "--host", httpbin_url, "--json-file", str(stats), "--exit-code-on-error", "0",
        "--es-url", es_url, "--es-index-prefix", prefix, "--sink-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    # cwd outside the repository, PYTHONPATH unset: only the virtualenv's locust_sink can be imported
    env = {k: v for k, v in locust_env().items() if k != "PYTHONPATH"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert str(bare_venv) in (tmp_path / "where.txt").read_text(), "the run used another locust_sink"
    match = re.search(r"locust-sink: run (\S+): recording requests", log)
    assert match, log[-2000:]
    truth = locust_truth(Path(str(stats) + ".json"))
    assert sum(truth["counts"].values()) > 100, "too few requests to prove anything"
    assert_matches(truth, es_landed(es_client(es_url), f"{prefix}-requests", match.group(1)))
    assert re.search(r"emitted=(\d+) indexed=\1 \(balanced\)", log), log[-2000:]
