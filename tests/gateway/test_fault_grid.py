"""The fault catalogue as a grid, over two topologies, against one long-lived gateway.

Topologies: three deployments on three servers (`separate`), and the same three models
on one server (`shared`, the way vLLM serving several models or llama.cpp's router
mode look). The routing file is LiteLLM's: alias `main` falls back to `backup`, then
`spare`. Faults are set per model, so the same case means the same thing in both.

Each topology's cases run one after the other against one gateway process (its pid is
checked throughout); between cases the upstreams are healed and the gateway is left
with nothing in flight, and every case must be answered as if it ran alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from localsuite.core.retry import set_testing
from localsuite.testing.fake_upstream import WORDS, FakeUpstream
from localsuite.testing.gateway_stack import FAST
from localsuite.testing.processes import ServiceProcess
from localsuite.testing.servers import serve_in_thread, wait_until

FULL = " ".join(WORDS)
MODELS = ("m-primary", "m-secondary", "m-tertiary")
ALIASES = ("main", "backup", "spare")
CONTEXT = {
    "error": {
        "message": "the request exceeds the available context size",
        "type": "exceed_context_size_error",
    }
}
FILTERED = {
    "error": {
        "message": "the answer was filtered by the content policy",
        "type": "invalid_request_error",
        "code": "content_filter",
    }
}


@dataclass(frozen=True)
class Case:
    id: str
    faults: dict[str, dict[str, Any]]  # model → fault
    served: str | None  # the model whose deployment the headers name (None: an error)
    attempts: int = 1
    status: int = 200
    calls: dict[str, int] = field(default_factory=dict)  # model → requests it received
    modes: tuple[bool, ...] = (False, True)  # plain, stream
    continued_on: str | None = None  # stream: the model that finished a broken stream


def case(
    id: str, served: str | None, faults: dict[str, dict[str, Any]] | None = None, **kw: Any
) -> Case:
    return Case(id, faults or {}, served, **kw)


P, S, T = MODELS
CASES = [
    case("healthy", P, calls={P: 1, S: 0}),
    case(
        "429-retry-after-fits",
        P,
        {P: {"mode": "status", "status": 429, "retry_after": "0", "times": 1}},
        attempts=2,
        calls={P: 2, S: 0},
    ),
    case(
        "429-retry-after-too-long",
        S,
        {P: {"mode": "status", "status": 429, "retry_after": "120", "times": 1}},
        attempts=2,
        calls={P: 1, S: 1},
    ),
    case(
        "429-without-retry-after",
        P,
        {P: {"mode": "status", "status": 429, "times": 1}},
        attempts=2,
        calls={P: 2},
    ),
    case(
        "500-once",
        P,
        {P: {"mode": "status", "status": 500, "times": 1}},
        attempts=2,
        calls={P: 2, S: 0},
    ),
    case(
        "503-persistent", S, {P: {"mode": "status", "status": 503}}, attempts=3, calls={P: 2, S: 1}
    ),
    case("reset-before-headers-once", P, {P: {"mode": "reset", "times": 1}}, calls={P: 2}),
    case(
        "reset-before-headers-persistent", S, {P: {"mode": "reset"}}, attempts=2, calls={P: 2, S: 1}
    ),
    case("no-answer-at-all", S, {P: {"mode": "hang"}}, attempts=2, calls={P: 1, S: 1}),
    case("slow-first-token", S, {P: {"mode": "slow_first", "delay": 5}}, attempts=2),
    case("slow-first-token-within-limit", P, {P: {"mode": "slow_first", "delay": 0.3}}),
    case("stream-cut", S, {P: {"mode": "cut", "after_events": 4}}, attempts=2, modes=(False,)),
    case(
        "stream-cut",
        P,
        {P: {"mode": "cut", "after_events": 4}},
        attempts=1,
        modes=(True,),
        continued_on=S,
    ),
    case("stream-stall", S, {P: {"mode": "stall", "after_events": 4}}, attempts=2, modes=(False,)),
    case(
        "stream-stall", P, {P: {"mode": "stall", "after_events": 4}}, modes=(True,), continued_on=S
    ),
    case(
        "malformed-chunk",
        S,
        {P: {"mode": "garbage", "after_events": 4}},
        attempts=2,
        modes=(False,),
    ),
    case(
        "malformed-chunk",
        P,
        {P: {"mode": "garbage", "after_events": 4}},
        modes=(True,),
        continued_on=S,
    ),
    case("no-done", P, {P: {"mode": "no_done"}}, calls={P: 1, S: 0}),
    case(
        "context-length",
        S,
        {P: {"mode": "status", "status": 400, "body": CONTEXT}},
        attempts=2,
        calls={P: 1, S: 1},
    ),
    case(
        "content-filter",
        None,
        {P: {"mode": "status", "status": 400, "body": FILTERED}},
        status=400,
        calls={P: 1, S: 0, T: 0},
    ),
    case(
        "fallback-refuses-prefill",
        P,
        {P: {"mode": "cut", "after_events": 4}, S: {"mode": "refuse_prefill"}},
        modes=(True,),
        continued_on=T,
    ),
    case(
        "fallback-refuses-prefill",
        S,
        {P: {"mode": "cut", "after_events": 4}, S: {"mode": "refuse_prefill"}},
        attempts=2,
        modes=(False,),
    ),
    case(
        "everything-down",
        None,
        {m: {"mode": "status", "status": 503} for m in MODELS},
        status=503,
        attempts=6,
    ),
]
GRID = [(c, stream) for c in CASES for stream in c.modes]


def routing_file(path: Path, urls: list[str]) -> Path:
    names = ["srv-a", "srv-b", "srv-c"] if len(set(urls)) > 1 else ["srv"] * 3
    entries = [
        {
            "model_name": alias,
            "litellm_params": {"model": f"openai/{model}", "api_base": url},
            "model_info": {"id": name},
        }
        for alias, model, url, name in zip(ALIASES, MODELS, urls, names, strict=True)
    ]
    config = {
        "model_list": entries,
        "router_settings": {
            "num_retries": 1,
            "allowed_fails": 50,
            "cooldown_time": 0.2,
            "fallbacks": [{"main": ["backup", "spare"]}],
        },
    }
    path.write_text(orjson.dumps(config).decode())  # JSON is YAML
    return path


@dataclass
class Topology:
    name: str
    fakes: dict[str, FakeUpstream]  # model → the fake that serves it
    gateway: ServiceProcess
    pid: int

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url, timeout=60)

    def calls(self) -> dict[str, int]:
        return {
            m: sum(r.get("model") == m for r in fake.requests) for m, fake in self.fakes.items()
        }

    def heal(self) -> None:
        for fake in {id(f): f for f in self.fakes.values()}.values():
            fake.heal()


@pytest.fixture(scope="module", params=["separate", "shared"])
def topology(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    set_testing(False)  # the gateway is its own process; nothing here waits on backoff
    kind = request.param
    tmp = tmp_path_factory.mktemp(kind)
    count = 3 if kind == "separate" else 1
    fakes = [FakeUpstream(f"fake-{i}") for i in range(count)]
    with serve_in_thread(fakes[0].app()) as first:
        urls = [first]
        contexts = [serve_in_thread(f.app()) for f in fakes[1:]]
        urls += [c.__enter__() for c in contexts]
        try:
            if count == 1:
                urls = urls * 3
            config = routing_file(tmp / "routing.json", [f"{u}/v1" for u in urls])
            env = {k.upper(): str(v) for k, v in FAST.items()}
            env.update(GATEWAY_CONFIG=str(config), LOG_LEVEL="INFO", LOCALSUITE_API_KEY="")
            gateway = ServiceProcess("api-gateway", tmp, env).start().wait_ready(60)
            try:
                assert gateway.proc is not None
                by_model = {m: fakes[i if count == 3 else 0] for i, m in enumerate(MODELS)}
                yield Topology(kind, by_model, gateway, gateway.proc.pid)
            finally:
                gateway.stop()
        finally:
            for context in contexts:
                context.__exit__(None, None, None)


def settle(top: Topology, client: httpx.Client) -> None:
    """Heal everything and wait until the gateway has nothing in flight and all is usable."""
    top.heal()

    def quiet() -> bool:
        health = client.get("/health").json()
        deployments = health["deployments"].values()
        return all(d["in_flight"] == 0 and d["usable"] for d in deployments)

    wait_until(quiet, 10, "the gateway idle and every deployment usable")
    for alias in ALIASES:  # a success on each resets what earlier cases counted
        assert chat(client, alias, stream=False)[0].status_code == 200


def chat(client: httpx.Client, alias: str, *, stream: bool) -> tuple[httpx.Response, str, bool]:
    """(response, the answer's text, whether a stream ended with [DONE])."""
    body = {
        "model": alias,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "max_tokens": len(WORDS),
    }
    if not stream:
        response = client.post("/v1/chat/completions", json=body)
        text = response.json()["choices"][0]["message"]["content"] if response.is_success else ""
        return response, text, False
    text, done = "", False
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if not response.is_success:
            response.read()
            return response, "", False
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done = True
                continue
            chunk = orjson.loads(data)
            assert "error" not in chunk, chunk
            for choice in chunk.get("choices") or ():
                text += (choice.get("delta") or {}).get("content") or ""
    return response, text, done


def alive(top: Topology, client: httpx.Client) -> None:
    assert top.gateway.proc is not None and top.gateway.proc.poll() is None
    assert client.get("/health/live").json()["pid"] == top.pid


@pytest.mark.parametrize(
    ("grid_case", "stream"), GRID, ids=[f"{c.id}-{'stream' if s else 'plain'}" for c, s in GRID]
)
def test_fault(topology: Topology, grid_case: Case, stream: bool) -> None:
    top = topology
    with top.client() as client:
        alive(top, client)
        settle(top, client)
        for model, fault in grid_case.faults.items():
            top.fakes[model].fault(**fault, model=model)
        before = top.calls()
        response, text, done = chat(client, "main", stream=stream)
        after = top.calls()
        assert response.status_code == grid_case.status, response.text
        if grid_case.served is None:
            error = response.json()["error"]
            assert error["message"]
            if grid_case.status == 503:
                assert int(response.headers["retry-after"]) >= 1
        else:
            assert response.headers["x-localsuite-deployment"].endswith(f"/{grid_case.served}")
            assert response.headers["x-localsuite-attempts"] == str(grid_case.attempts)
            assert text == FULL  # each word once, whatever broke on the way
            assert done == stream  # a stream ends with [DONE]; a plain answer has none
        for model, count in grid_case.calls.items():
            assert after[model] - before[model] == count, (model, before, after)
        if grid_case.continued_on is not None:
            continuation = top.fakes[grid_case.continued_on].requests[-1]
            assert continuation["model"] == grid_case.continued_on
            assert continuation["messages"][-1]["role"] == "assistant"  # the prefill
        alive(top, client)


def test_a_flapping_primary_costs_no_client_a_failure(topology: Topology) -> None:
    """Down, up, down again: every request is answered, none is left in flight."""
    top = topology
    with top.client() as client:
        settle(top, client)
        served = []
        for failing in (True, False, True, False):
            if failing:
                top.fakes[P].fault("status", status=503, model=P)
            else:
                top.fakes[P].heal()
            for stream in (False, True):
                response, text, _ = chat(client, "main", stream=stream)
                assert response.status_code == 200 and text == FULL
                served.append(response.headers["x-localsuite-deployment"].rsplit("/", 1)[1])
        assert served == [S, S, P, P, S, S, P, P]
        settle(top, client)  # nothing stranded: in flight back to zero
        alive(top, client)
