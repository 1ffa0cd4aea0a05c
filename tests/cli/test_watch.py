"""`localsuite status --watch`: the numbers read from real services' `/health` and
`/metrics` (a gateway in front of fault-injecting upstreams, the metrics' own hooks), the
rates between two snapshots, and services that do not answer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from localsuite.cli import render
from localsuite.cli.watch import Histogram, Probe, collect, rates, snapshot
from localsuite.core.metrics import GatewayMetrics, RagMetrics, new_registry
from localsuite.core.metrics import render as metrics_text
from localsuite.core.retry import no_backoff
from localsuite.core.stack import ProcessState, ServiceState, StackState
from localsuite.gateway.app import create_gateway_app
from localsuite.gateway.servers import Health
from localsuite.supervisor.supervisor import Supervisor
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import Stack, make_settings
from localsuite.testing.servers import free_port, serve_in_thread, wait_until

from .conftest import Cli
from .test_render import text

FRAME = re.compile(r"^localsuite \d\d:\d\d:\d\d", re.MULTILINE)  # each frame's first line
CLOSED = f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with no_backoff():
        yield


@pytest.fixture
def troubled() -> Iterator[Stack]:
    """A gateway whose chat server failed (its circuit open) and then went to load a model
    (down), whose chat request failed over to the code server, and whose code server is
    busy (one slot, an answer that never comes) with one more request in its queue."""
    chat, code = FakeUpstream("chat"), FakeUpstream("code", slots=1)
    with ExitStack() as opened:
        chat_url = opened.enter_context(serve_in_thread(chat.app()))
        code_url = opened.enter_context(serve_in_thread(code.app()))
        never = {"llm_first_byte_timeout": 600.0, "llm_request_timeout": 600.0}
        settings = make_settings(chat_url, code_url, gateway_breaker_cooldown=600.0, **never)
        app = create_gateway_app(settings)
        stack = Stack(opened.enter_context(serve_in_thread(app)), chat, code, app.state.gateway)
        wait_until(lambda: stack.deployment("inference-code").limit == 1, 10, "code's slots")
        chat.fault("status", status=500)
        with stack.client() as client:
            answer = stack.chat(client, stream=True)
        assert answer.headers["x-localsuite-backend"] == "inference-code"
        chat.health_status = 503
        wait_until(lambda: stack.server("inference-chat").health is Health.LOADING, 10, "loading")
        code.fault("hang")
        # The held requests end when the servers stop, after the test: no thread waits.
        pool = concurrent.futures.ThreadPoolExecutor(2)
        client = opened.enter_context(stack.client())
        body = {"model": "code-7b", "messages": [{"role": "user", "content": "hi"}]}
        pool.submit(client.post, "/v1/chat/completions", json=body)
        wait_until(lambda: code.in_flight == 1, 10, "code's slot taken")
        pool.submit(client.post, "/v1/chat/completions", json=body)
        wait_until(lambda: stack.gateway.admission.depth("code-7b") == 1, 10, "one waiting")
        yield stack
        pool.shutdown(wait=False)


def service(url: str, **kw: object) -> ServiceState:
    values: dict[str, object] = {"state": ProcessState.READY, "port": 1, "log": "x.log"}
    return ServiceState(health_url=f"{url}/health", **{**values, **kw})


def stack_of(**services: ServiceState) -> StackState:
    return StackState(supervisor_pid=7, preset="p2", written_at=0, services=services)


def test_the_snapshot_holds_the_gateways_numbers_as_it_serves_them(troubled: Stack) -> None:
    known = stack_of(**{"api-gateway": service(troubled.url),
                        "rag": service(CLOSED, state=ProcessState.FAILED)})  # fmt: skip
    ticks = iter([42.0])
    shot = asyncio.run(collect(CLOSED, {}, {}, known=known, clock=ticks.__next__))
    assert shot.at == 42.0 and shot.stack == known and shot.supervisor_error is not None
    assert shot.requests == {("chat-7b", "ok"): 1}
    assert shot.failovers == {"chat-7b": 1, "code-7b": 0}  # every alias's series, from 0
    assert shot.attempts[("inference-chat", "http_error")] == 2
    assert shot.attempts[("inference-code", "ok")] == 1
    assert shot.deployments["inference-chat"]["circuit"] == "open"
    assert shot.servers["inference-chat"]["state"] == "loading"
    assert shot.servers["inference-code"]["in_flight"] == 1
    assert shot.queues["code-7b"] == 1
    assert shot.first_token["chat-7b"].count == 1
    gateway, rag = shot.services
    assert gateway.answered and gateway.healthy
    assert not rag.answered and rag.state is ProcessState.FAILED and "Connect" in rag.problem
    assert not shot.rag_up


def test_the_watch_shows_requests_circuits_servers_queues_and_restarts(
    cli: Cli, troubled: Stack, request: pytest.FixtureRequest
) -> None:
    for port in ("INFERENCE_PORT", "INFERENCE_CODE_PORT", "EMBEDDING_PORT", "RAG_PORT"):
        cli.env[port] = str(free_port())
    cli.env["API_GATEWAY_PORT"] = troubled.url.rpartition(":")[2]
    control: Supervisor = request.getfixturevalue("control")  # with the ports above
    control.services["rag"].restarts = 3
    result = cli("status", "--watch", "--count", "2", "--interval", "0")
    assert result.exit_code == 0, result.output
    frames = FRAME.split(result.stdout)[1:]
    assert len(frames) == 2 and "rates over the last" in frames[1]
    shown = frames[1]
    assert cells(shown, "chat-7b")[:2] == ["1", "0.00"]  # ok 1, nothing in between
    assert cells(shown, "code-7b")[-4:-1] == ["0", "1", "-"]  # failovers, queue, ttft
    assert cells(shown, "inference-chat", after="deployments")[:2] == ["inference-chat", "open"]
    assert cells(shown, "inference-chat", after="servers")[0] == "loading"
    # rag waits for services this stack never starts: not up yet, not down
    assert cells(shown, "rag")[:4] == [
        "stopped",
        "not yet",
        "3",
        "waiting for embedding, api-gateway",
    ]
    assert cells(shown, "api-gateway")[:2] == ["stopped", "ok"]


def cells(shown: str, name: str, after: str = "") -> list[str]:
    """The cells after the first one of the row named `name` (below the title `after`)."""
    below = shown[shown.index(after) :] if after else shown
    line = next(line for line in below.splitlines() if line.startswith(f"│ {name} "))
    return [cell.strip() for cell in line.split("│")[2:-1]]


def test_rates_are_the_counters_change_over_the_clocks_time() -> None:
    registry = new_registry()
    metrics = GatewayMetrics(registry)
    for _ in range(2):
        metrics.request("chat-7b", "chat", "ok", 0.1)
    gateway = stack_of(**{"api-gateway": service(CLOSED)})
    before = snapshot(gateway, {"api-gateway": Probe(200, {}, metrics_text(registry).decode())},
                      at=10.0)  # fmt: skip
    for outcome in ("ok", "ok", "ok", "ok", "failed", "failed"):
        metrics.request("chat-7b", "chat", outcome, 0.1)
    after = snapshot(gateway, {"api-gateway": Probe(200, {}, metrics_text(registry).decode())},
                     at=12.0)  # fmt: skip
    found = rates(before, after)
    assert found is not None and found.seconds == 2.0
    assert found.requests == {"chat-7b": 3.0} and found.failed == {"chat-7b": 1.0}
    assert rates(after, after) is None
    restarted = snapshot(gateway, {"api-gateway": Probe(200, {}, _one_request())}, at=14.0)
    reset = rates(after, restarted)  # a total that went down: the gateway restarted
    assert reset is not None and reset.requests == {"chat-7b": 0.5}
    shown = text(render.watch_view(after, before, 0.0))
    assert cells(shown, "chat-7b")[:4] == ["6", "2", "3.00", "1.00"]


def _one_request() -> str:
    registry = new_registry()
    GatewayMetrics(registry).request("chat-7b", "chat", "ok", 0.1)
    return metrics_text(registry).decode()


def test_rags_jobs_queries_and_dependencies_come_from_its_metrics() -> None:
    registry = new_registry()
    metrics = RagMetrics(registry)
    metrics.query("ok")
    metrics.query("unavailable")
    metrics.job_states({"queued": 2, "running": 1})
    metrics.dependency("qdrant", True)
    metrics.dependency("embedding", False)
    probe = Probe(200, {"ok": True}, metrics_text(registry).decode())
    shot = snapshot(stack_of(rag=service(CLOSED)), {"rag": probe}, at=0.0)
    assert shot.rag_jobs == {"queued": 2, "running": 1}
    assert shot.rag_dependencies == {"qdrant": True, "embedding": False}
    shown = text(render.watch_view(shot, None, 0.0))
    assert "queries: ok 1, unavailable 1 · jobs: queued 2, running 1 · embedding down, " \
           "qdrant up" in shown  # fmt: skip


def test_services_that_do_not_answer_show_as_down() -> None:
    known = stack_of(**{"api-gateway": service(CLOSED), "rag": service(CLOSED),
                        "inference-chat": service(CLOSED, model="m.gguf")})  # fmt: skip
    shot = asyncio.run(collect(CLOSED, {}, {}, known=known, clock=lambda: 0.0))
    shown = text(render.watch_view(shot, None, 0.0))
    assert "the supervisor does not answer (ConnectError" in shown
    for name in known.services:
        assert cells(shown, name)[:2] == ["ready", "down"]
    assert "api-gateway does not answer" in shown and "rag does not answer" in shown
    nothing = asyncio.run(collect(CLOSED, {}, {}, clock=lambda: 0.0))
    assert nothing.services == () and "does not answer" in text(render.watch_view(nothing, None, 0))


def test_a_service_still_waiting_for_its_dependencies_is_not_down() -> None:
    known = stack_of(**{
        "mcp-server": service(CLOSED, state=ProcessState.STOPPED, waiting_for=["rag"]),
        "rag": service(CLOSED, state=ProcessState.STARTING),
        "embedding": service(CLOSED, state=ProcessState.FAILED, last_error="exit 1"),
    })  # fmt: skip
    shot = asyncio.run(collect(CLOSED, {}, {}, known=known, clock=lambda: 0.0))
    shown = text(render.watch_view(shot, None, 0.0))
    assert cells(shown, "mcp-server")[:2] == ["stopped", "not yet"]
    assert "waiting for rag" in shown
    assert cells(shown, "rag")[:2] == ["starting", "not yet"]
    assert cells(shown, "embedding")[:2] == ["failed", "down"]  # failed is down


def test_an_unhealthy_answer_says_which_checks_fail() -> None:
    failing = {"ok": False, "detail": "no backend up ([/a] down)"}  # not markup: shown as is
    health = {"ok": False, "checks": {"alias:chat-7b": failing, "alias:code-7b": {"ok": True}}}
    shot = snapshot(
        stack_of(**{"api-gateway": service(CLOSED)}), {"api-gateway": Probe(503, health, "")}, 0.0
    )
    assert cells(text(render.watch_view(shot, None, 0.0)), "api-gateway")[1:] == [
        "503", "0", "alias:chat-7b: no backend up ([/a] down)",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("counts", "p50"),
    [((0, 0, 0), None), ((2, 4, 4), 1.0), ((0, 4, 4), 1.5), ((0, 0, 4), 2.0)],
)
def test_the_median_of_a_histogram(counts: tuple[int, int, int], p50: float | None) -> None:
    bounds = (1.0, 2.0, float("inf"))
    histogram = Histogram(tuple(zip(bounds, map(float, counts), strict=True)), 4.0, counts[-1])
    assert histogram.quantile(0.5) == p50


def test_interval_and_count_go_with_watch(cli: Cli) -> None:
    result = cli("status", "--count", "1")
    assert result.exit_code == 2 and "go with --watch" in result.stderr


def test_watch_needs_a_running_stack(cli: Cli) -> None:
    result = cli("status", "--watch", "--count", "1")
    assert result.exit_code == 1 and "no stack is running" in result.stderr
