"""The Grafana dashboard of deploy/monitoring: its queries name only metrics the suite
exports, and each returns data from a real Prometheus scraping a real stack after a
failover, a rag index job, an MCP tool call and streamed answers.

Grafana itself is not run (no image, no package here): Prometheus evaluates each panel's
query as Grafana would send it, with Grafana's macros put in.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from mcp import Client

from localsuite.core import metrics
from localsuite.deploy.containers import PYTHON_SERVICES, container_port
from localsuite.testing.detached import DetachedStack
from localsuite.testing.load import Load
from localsuite.testing.processes import PORT_VARIABLES
from localsuite.testing.servers import free_port, stop_process, wait_healthy, wait_until

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "localsuite.json"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"

INSTALL_HINT = (
    "tests/monitoring need Prometheus: run `scripts/install.sh --dev` as root, or "
    "`sudo apt-get install --no-install-recommends prometheus` on Debian/Ubuntu"
)
# What Grafana sends for its macros with the dashboard's defaults: `$__rate_interval` is
# four scrape intervals of the Compose Prometheus (15 s); `$__range` the default time range.
GRAFANA_MACROS = {"$__rate_interval": "1m", "$__range": "1h"}
# Made by Prometheus for every target, not exported by a service.
PROMETHEUS_SERIES = {"up"}
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


@dataclass(frozen=True, slots=True)
class Query:
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"panel {self.panel!r} ({self.ref}): {self.expr}"

    def as_sent(self) -> str:
        expr = self.expr
        for macro, value in GRAFANA_MACROS.items():
            expr = expr.replace(macro, value)
        return expr


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))  # a collapsed row keeps its panels


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries() -> list[Query]:
    found = [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]
    assert found, f"{DASHBOARD} has no queries"
    return found


_MATCHERS = re.compile(r"\{[^}]*\}")  # label matchers, with their quoted values
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])[a-zA-Z_:][\w:]*")  # not a Grafana $macro
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects: the identifiers left once label matchers,
    ranges and grouping labels are gone, other than functions and operators."""
    bare = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", expr)))
    names = set()
    for match in _IDENTIFIER.finditer(bare):
        calls_a_function = bare[match.end() :].lstrip().startswith("(")
        if not calls_a_function and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def exported_metrics() -> set[str]:
    """The sample names of every metrics class of core/metrics.py, each on a fresh registry
    (with the process collector every service's registry has)."""
    names: set[str] = set()
    for _, cls in inspect.getmembers(metrics, inspect.isclass):
        if cls.__module__ != metrics.__name__ or not cls.__name__.endswith("Metrics"):
            continue
        registry = metrics.new_registry()
        cls(registry)
        for family in registry.collect():
            names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


# --- the files ---------------------------------------------------------------------------


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        '(sum by (alias) (rate(a_total{outcome="up"}[$__rate_interval])) or b * 0) / '
        "histogram_quantile(0.95, sum by (le) (rate(c_bucket[1m]))) unless on (job) up offset 1e3"
        " or (d unless d offset $__range)"
    )
    assert metric_names(expr) == {"a_total", "b", "c_bucket", "up", "d"}


def test_every_query_names_only_metrics_the_suite_exports() -> None:
    exported = exported_metrics() | PROMETHEUS_SERIES
    for query in queries():
        named = metric_names(query.expr)
        assert named, f"{query} selects no metric"
        assert named <= exported, (
            f"{query} names {sorted(named - exported)}, which no service exports"
        )


def test_every_panel_reads_the_chosen_data_source_and_only_known_macros() -> None:
    board = dashboard()
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource", "datasource", "prometheus",
    )  # fmt: skip
    shown = [p for p in panels(board["panels"]) if p["type"] != "row"]
    assert len({p["id"] for p in panels(board["panels"])}) == len(list(panels(board["panels"])))
    for panel in shown:
        assert panel["targets"], panel["title"]
        for holder in (panel, *panel["targets"]):
            assert holder["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel[
                "title"
            ]
    for query in queries():
        assert "$" not in query.as_sent(), f"{query}: a Grafana variable the test cannot fill"


def test_prometheus_scrapes_every_python_service_by_its_compose_name() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {name: [f"{name}:{container_port(name)}"] for name in PYTHON_SERVICES}


# --- a real Prometheus against a real stack ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prometheus:
    url: str

    def _get(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (path, answer.text)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/v1/query", query=expr)["result"]
        return result

    def metric_names(self) -> set[str]:
        return set(self._get("/api/v1/label/__name__/values"))

    def targets_down(self) -> list[str]:
        active = self._get("/api/v1/targets", state="active")["activeTargets"]
        return [t["labels"]["job"] for t in active if t["health"] != "up"]


def scrape_config(stack: DetachedStack) -> dict[str, Any]:
    """deploy/monitoring/prometheus.yml with each Compose target at this stack's port on
    loopback, a scrape every second, and the supervisor, which Compose does not run."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            group["targets"] = [
                f"127.0.0.1:{stack.env[PORT_VARIABLES[t.rsplit(':', 1)[0]]]}"
                for t in group["targets"]
            ]
    supervisor = {"targets": [f"127.0.0.1:{stack.env['SUPERVISOR_PORT']}"]}
    config["scrape_configs"].append({"job_name": "supervisor", "static_configs": [supervisor]})
    return config


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DetachedStack]:
    # One slot per llama-server: concurrent requests wait in the gateway's queue.
    with DetachedStack.create(tmp_path / "stack", LLAMA_PARALLEL="1") as stack:
        yield stack


@pytest.fixture
def prometheus(stack: DetachedStack, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(stack)))
    address = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={address}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        url = f"http://{address}"
        wait_healthy(f"{url}/-/ready", proc, 60, lambda: log_path.read_text(errors="replace"))
        yield Prometheus(url)
    finally:
        stop_process(proc, grace=15)


def index_a_document(stack: DetachedStack) -> None:
    documents = Path(stack.env["DATA_DIR"]) / "documents"
    documents.mkdir(parents=True, exist_ok=True)
    (documents / "lighthouse.md").write_text(
        "# The lighthouse\n\nThe keeper lights the lamp at dusk and logs every passing ship.\n"
    )
    rag = f"http://127.0.0.1:{stack.env['RAG_PORT']}"
    answer = httpx.post(f"{rag}/index", json={"paths": ["lighthouse.md"]}, timeout=90)
    assert answer.status_code == 200, answer.text
    assert answer.json()["job"]["state"] == "done"


def call_an_mcp_tool(stack: DetachedStack) -> None:
    async def call() -> None:
        with anyio.fail_after(60):
            async with Client(f"http://127.0.0.1:{stack.env['MCP_PORT']}/mcp") as client:
                result = await client.call_tool("stack_status", {})
                assert not result.is_error

    anyio.run(call)


def fail_over_under_load(stack: DetachedStack, prometheus: Prometheus) -> None:
    """SIGKILL inference-chat while chat-7b is busy: what it had in hand and what waited
    for it moves to inference-code; the supervisor starts it again."""
    load = Load(stack.sdk(timeout=60), model="chat-7b")
    workers = load.run(streams=2, plains=2)
    try:
        wait_until(lambda: load.count() >= 4, 180, "steady load on chat-7b")
        killed = stack.kill("inference-chat")
        failovers = 'localsuite_gateway_failovers_total{from_deployment="inference-chat"} > 0'
        wait_until(lambda: prometheus.query(failovers), 60, "a failover seen by Prometheus")
        stack.wait_restarted("inference-chat", killed, 120)
    finally:
        load.finish(workers)


@pytest.mark.llama
@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_every_panel_has_data_from_a_real_prometheus_scraping_the_stack(
    stack: DetachedStack, prometheus: Prometheus
) -> None:
    started = stack.up("p3")
    assert started.returncode == 0, started.stderr + started.stdout
    wait_until(lambda: not prometheus.targets_down(), 60, "every scrape target up")

    index_a_document(stack)
    call_an_mcp_tool(stack)
    fail_over_under_load(stack, prometheus)

    everything = queries()
    empty = list(everything)

    def every_query_has_data() -> bool:
        empty[:] = [q for q in empty if not prometheus.query(q.as_sent())]
        return not empty

    try:
        wait_until(every_query_has_data, 60, "a series for every panel")
    except AssertionError:
        pytest.fail("no series for:\n" + "\n".join(map(str, empty)), pytrace=False)

    # What the test caused shows as such, not as 0: increase() alone takes a counter's
    # first sample as its start, and these counters are born by the event itself.
    caused = {
        "Failovers by alias and from deployment": ("from_deployment", "inference-chat"),
        "Supervisor restarts in the time range": ("service", "inference-chat"),
    }
    assert set(caused) <= {q.panel for q in everything}
    for query in everything:
        if query.panel in caused:
            label, value = caused[query.panel]
            series = prometheus.query(query.as_sent())
            assert any(
                s["metric"].get(label) == value and float(s["value"][1]) > 0 for s in series
            ), f"{query} shows {series}"

    present = prometheus.metric_names()
    for query in everything:
        assert metric_names(query.expr) <= present, f"{query}: not scraped from the stack"
