"""Issue 17 §2: the compatibility matrix of docs/opensearch.md, checked against real servers.

Every probe of tests/opensearch_compat.py runs once per server (the session's real Elasticsearch 8.19.21, and a
real OpenSearch 2.19.6 and 3.8.0 from `es-local.sh --dist opensearch`; 3.x is skipped, with the reason, where no
JDK 21+ exists). Each test compares one probe's observation with its cell in the doc's table: the cell's first
word is the verdict (works / differs / missing) and every `code` span in it must be in the observed detail.
So the table cannot drift from what the servers answer.
"""

from __future__ import annotations

import re

import opensearch_compat as compat
import pytest

pytestmark = pytest.mark.slow

SERVERS = ("Elasticsearch 8.19.21", "OpenSearch 2.19.6", "OpenSearch 3.8.0")
_observed: dict[str, dict[str, compat.Observed]] = {}


def doc_matrix() -> dict[str, dict[str, str]]:
    """`{probe: {server column: cell}}` from the table of docs/opensearch.md's "The matrix" section."""
    section = compat.DOC.read_text().split("\n## The matrix\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        assert len(cells) == len(header), line
        key = cells[0].strip("`")
        assert key not in rows, f"probe {key} listed twice"
        rows[key] = dict(zip(header, cells, strict=True))
    return rows


MATRIX = doc_matrix()


def server_label(url: str) -> str:
    server = compat.Server(url)
    version = server.ok("GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"})
    number = next(iter(version["nodes"].values()))["version"]
    return f"{'OpenSearch' if server.distribution == 'opensearch' else 'Elasticsearch'} {number}"


def observed(url: str) -> dict[str, compat.Observed]:
    """Every probe's result on this server, run once per session."""
    if url not in _observed:
        _observed[url] = compat.run_all(url)
    return _observed[url]


def check(url: str, probe: str) -> None:
    label = server_label(url)
    if label not in SERVERS:  # e.g. ES_TEST_URL pointing at another version
        pytest.skip(f"docs/opensearch.md has no column for {label}")
    cell = MATRIX[probe][label]
    verdict = cell.split(":")[0].split(" ")[0]
    seen = observed(url)[probe]
    assert seen.verdict == verdict, f"{probe} on {label}: observed {seen.verdict} ({seen.detail}); doc says {cell}"
    for fragment in re.findall(r"`([^`]+)`", cell):
        assert fragment in seen.detail, f"{probe} on {label}: {fragment!r} not in observed {seen.detail!r}"
    print(f"{label} {probe}: {seen.verdict} {seen.detail[:160]}")


def test_the_table_lists_every_probe_once_with_a_verdict_per_server():
    assert list(MATRIX) == list(compat.PROBES)
    for probe, row in MATRIX.items():
        for label in SERVERS:
            assert re.match(r"(works|differs|missing)\b", row[label]), (probe, label, row[label])
        assert row["what the OpenSearch backend must do"], probe


@pytest.mark.parametrize("probe", list(compat.PROBES))
def test_elasticsearch_column(es_url: str, probe: str) -> None:
    check(es_url, probe)


@pytest.mark.parametrize("probe", list(compat.PROBES))
def test_opensearch_columns(opensearch_url: str, probe: str) -> None:
    check(opensearch_url, probe)
