"""options.py and config.py: the option table, Locust's parser, environment variables, URLs, redaction."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from locust_sink.config import EsConfig, redact, redact_url, split_urls
from locust_sink.options import SinkOptions, option_values, parse_tags, str2bool

ROOT = Path(__file__).resolve().parents[1]


def test_options_defaults_tags_and_validation():
    opts = SinkOptions.from_values(option_values(None))
    assert opts.es is None and opts.index_prefix == "locust" and opts.sink_dir == "locust-results"
    assert opts.settings.batch_size == 1000 and opts.sample_rate == 1.0
    opts = SinkOptions.from_values(
        option_values(None, {"es_url": "http://a:9200,http://b:9200", "run_tag": ["x=1", "y=2"]})
    )
    assert opts.es is not None and opts.es.urls == ["http://a:9200", "http://b:9200"]
    assert opts.tags == {"x": "1", "y": "2"}
    assert parse_tags("a=1,b=2") == {"a": "1", "b": "2"}
    with pytest.raises(ValueError):
        parse_tags(["novalue"])
    with pytest.raises(TypeError):
        option_values(None, {"not_an_option": 1})
    assert str2bool("false") is False and str2bool("ON") is True
    with pytest.raises(argparse.ArgumentTypeError):
        SinkOptions.from_values(option_values(None, {"sink_sample_rate": 0}))
    with pytest.raises(ValueError, match="not an http"):
        SinkOptions.from_values(option_values(None, {"es_url": "http://a:9200,notaurl"}))


def test_secrets_are_redacted():
    assert redact_url("http://user:pw@host:9200/x") == "http://host:9200/x"
    assert redact("failed http://u:secret@h:1 with key K3Y", ["K3Y"]) == "failed http://***@h:1 with key ***"
    cfg = EsConfig(urls=split_urls(["http://u:urlpw@h:9200"]), password="pw1", api_key="key1")
    assert set(cfg.secrets()) == {"pw1", "key1", "urlpw"}
    assert "urlpw" not in cfg.describe()


def test_locust_parser_gets_options_once_and_hides_secrets():
    import locust.argument_parser as ap

    from locust_sink.options import add_arguments

    parser = ap.get_empty_argument_parser()
    ap.setup_parser_arguments(parser)
    add_arguments(parser)
    add_arguments(parser)  # web-UI page loads fire the hook again: must not raise
    opts = parser.parse_args(
        ["--es-url", "http://127.0.0.1:9200", "--run-tag", "a=1", "--run-tag", "b=2", "--es-verify-certs", "false"]
    )
    assert opts.es_url == "http://127.0.0.1:9200" and opts.run_tag == ["a=1", "b=2"]
    assert opts.es_verify_certs is False
    assert not parser.parse_args(["--es-url", ""]).es_url  # empty: none (file mode), as an empty env var
    web = parser.args_included_in_web_ui
    assert "es_url" in web and "es_password" not in web and "es_api_key" not in web


def test_cli_import_path_does_not_import_locust():
    code = "import sys, locust_sink.cli; print('locust' in sys.modules, 'gevent.monkey' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_option_has_its_locust_env_var(monkeypatch):
    import locust.argument_parser as ap

    from locust_sink.options import DEFAULTS, add_arguments

    monkeypatch.setenv("LOCUST_ES_URL", "http://127.0.0.1:9200")
    monkeypatch.setenv("LOCUST_ES_PASSWORD", "from-env")
    monkeypatch.setenv("LOCUST_RUN_TAG", "team=perf")
    monkeypatch.setenv("LOCUST_SINK_FLUSH_TIMEOUT", "3")
    parser = ap.get_empty_argument_parser()
    ap.setup_parser_arguments(parser)
    add_arguments(parser)
    opts = parser.parse_args([])
    assert opts.es_url == "http://127.0.0.1:9200" and opts.es_password == "from-env"
    assert opts.run_tag == ["team=perf"] and opts.sink_flush_timeout == 3.0
    env_names = {a.dest: getattr(a, "env_var", None) for a in parser._actions}
    for dest in DEFAULTS:
        assert env_names[dest] == "LOCUST_" + dest.upper(), dest


def test_design_md_holds_the_table_generated_from_the_options():
    """docs/DESIGN.md's options table is `python -m locust_sink.options`'s output, row for row: the option
    table in options.py is the one place where flags and defaults are written."""
    from locust_sink.options import OPTIONS, design_table

    design = (ROOT / "docs" / "DESIGN.md").read_text()
    assert design_table() in design, "regenerate the table: python -m locust_sink.options"
    assert design_table().count("\n") == len(OPTIONS) + 2


def test_defaults_have_one_home():
    """Library use (attach), Locust's parser and the delivery settings all take the table's defaults."""
    import locust.argument_parser as ap

    from locust_sink.options import DEFAULTS, OPTIONS, SinkSettings, add_arguments

    parser = ap.get_empty_argument_parser()
    ap.setup_parser_arguments(parser)
    add_arguments(parser)
    parsed = parser.parse_args([])
    assert {o.dest: getattr(parsed, o.dest) for o in OPTIONS} == DEFAULTS
    from_table = SinkOptions.from_values(option_values(None)).settings
    assert from_table == SinkSettings()
    assert from_table.batch_size == DEFAULTS["sink_batch_size"] and from_table.encoder == DEFAULTS["sink_encoder"]
    help_text = parser.format_help()
    assert "(default 1000)" in help_text and "(default locust-results)" in help_text


def test_readme_options_table_names_every_option_with_its_default():
    """README's table is written for users (its own descriptions), but every flag is in it, with the
    option table's default."""
    import re

    from locust_sink.options import OPTIONS

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`--"):
            for flag in re.findall(r"`(--[a-z0-9-]+)", cells[0]):
                rows[flag] = cells[1]
    for opt in OPTIONS:
        assert opt.flag in rows, f"{opt.flag} is missing from README's options table"
        default = opt.default_text()
        if default:
            assert f"`{default}`" in rows[opt.flag], (opt.flag, rows[opt.flag], default)
        else:
            assert rows[opt.flag].startswith(("none", "generated")), (opt.flag, rows[opt.flag])
