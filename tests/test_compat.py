"""Client/server majors: client 9 cannot talk to ES 8 (media_type_header_exception). The sink must say
exactly that and what to install, against the real ES 8 -- checked with client 9 in its own virtualenv."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client9_python(tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("client9") / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "elasticsearch>=9,<10", "orjson>=3.9"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return py


def test_client9_against_es8_says_what_to_install(client9_python, es_url):
    code = (
        "import elasticsearch, sys\n"
        "from locust_sink.bulk import SinkTransportError\n"
        "from locust_sink.config import EsConfig\n"
        "from locust_sink.transport import check_server, make_client\n"
        f"es = make_client(EsConfig(urls=[{es_url!r}]))\n"
        "try:\n"
        "    check_server(es)\n"
        "except SinkTransportError as exc:\n"
        "    print(exc.kind.value, '|', exc)\n"
        "    sys.exit(0)\n"
        "print('no error with client', elasticsearch.__versionstr__)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run(
        [str(client9_python), "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kind, message = proc.stdout.split("|", 1)
    assert kind.strip() == "version"
    assert "client 9" in message and "pip install 'elasticsearch>=8.19,<9'" in message


def test_cli_with_client9_fails_with_one_clear_line(client9_python, es_url):
    proc = subprocess.run(
        [str(client9_python), "-m", "locust_sink.cli", "setup", "--es-url", es_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert "pip install 'elasticsearch>=8.19,<9'" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
