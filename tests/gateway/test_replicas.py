"""Replicas of one priority share the load, keep their conversations, and never pile up:
balancing, prompt-cache affinity, admission (slots, queue, 429, deadline) and reloads."""

from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from localsuite.core.settings import Settings
from localsuite.gateway.app import create_gateway_app
from localsuite.gateway.config import load_routing, parse_litellm_config
from localsuite.gateway.gateway import Gateway
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import FAST
from localsuite.testing.servers import serve_in_thread, wait_until

SYSTEM = "You are a careful assistant. " * 40  # a long system prompt every conversation shares


@dataclass
class Replicas:
    url: str
    fakes: list[FakeUpstream]  # replicas first, then the fallback (if any)
    gateway: Gateway
    stack: ExitStack
    urls: list[str]

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def served_by(self, response: httpx.Response) -> int:
        """Which fake answered: its index."""
        server = self.gateway.table.servers[response.headers["x-localsuite-backend"]]
        return next(i for i, u in enumerate(self.urls) if u in server.spec.api_base)


def turn(
    client: httpx.Client, first: str, turns: int = 1, headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:  # fmt: skip
    """Turn number `turns` of a conversation opened by `first`."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": first}]
    for n in range(1, turns):
        messages += [{"role": "assistant", "content": f"answer {n}"},
                     {"role": "user", "content": f"and then {n}?"}]  # fmt: skip
    payload = {"model": "chat", "messages": messages, "max_tokens": 3, **body}
    return client.post("/v1/chat/completions", json=payload, headers=headers or {})


@pytest.fixture
def replicas_factory() -> Iterator[Any]:
    with ExitStack() as outer:

        def build(
            count: int = 2,
            *,
            slots: int | None = 2,
            fallback: bool = False,
            extra: str = "",
            params: str = "",
            weights: list[float] | None = None,
            **overrides: Any,
        ) -> Replicas:
            fakes = [FakeUpstream(f"replica-{i}", slots=slots) for i in range(count)]
            if fallback:
                fakes.append(FakeUpstream("fallback"))
            stack = outer.enter_context(ExitStack())
            urls = [stack.enter_context(serve_in_thread(f.app())) for f in fakes]
            entries = []
            for i, url in enumerate(urls):
                last = fallback and i == len(urls) - 1
                weight = f", weight: {weights[i]}" if weights and not last else ""
                entries.append(
                    f"  - {{model_name: chat, litellm_params: {{api_base: '{url}/v1', "
                    f"order: {2 if last else 1}{weight}{params}}}}}"
                )
            text = "model_list:\n" + "\n".join(entries) + "\n" + extra
            settings = Settings(_env_file=None, **{**FAST, **overrides})  # type: ignore[arg-type]
            routing = parse_litellm_config(yaml.safe_load(text), settings, {})
            app = create_gateway_app(settings, routing)
            url = stack.enter_context(serve_in_thread(app))
            return Replicas(url, fakes, app.state.gateway, stack, urls)

        yield build


def in_parallel(count: int, work: Any) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(work, range(count)))


# --- balancing ---------------------------------------------------------------------------


def test_equal_priorities_share_the_load_and_no_replica_idles_while_one_queues(
    replicas_factory: Any,
) -> None:
    group = replicas_factory(2, slots=2, llm_first_byte_timeout=10.0)
    for fake in group.fakes:
        fake.fault("slow", delay=0.6)
    with group.client() as client:
        answers = in_parallel(6, lambda i: turn(client, f"question {i}"))
    assert all(a.status_code == 200 for a in answers)
    assert [f.most_in_flight for f in group.fakes] == [2, 2]  # both full, neither over its limit
    # the two that waited went to whichever replica freed a slot first
    assert all(len(f.requests) >= 2 for f in group.fakes) and len(group.fakes[0].requests) + len(
        group.fakes[1].requests) == 6  # fmt: skip


def test_weights_share_the_load_in_proportion(replicas_factory: Any) -> None:
    group = replicas_factory(2, slots=None, weights=[3, 1])
    with group.client() as client:
        served = Counter(group.served_by(turn(client, f"q{i}", headers={
            "x-session-id": f"s{i}"})) for i in range(160))  # fmt: skip
    assert 2.0 <= served[0] / served[1] <= 5.0, served


def test_a_lower_priority_stays_failover_and_is_not_used_while_busy(replicas_factory: Any) -> None:
    group = replicas_factory(1, slots=1, fallback=True, llm_first_byte_timeout=10.0)
    group.fakes[0].fault("slow", delay=0.5, times=1)
    with group.client() as client:
        answers = in_parallel(3, lambda i: turn(client, f"q{i}"))
    assert all(a.status_code == 200 for a in answers)
    assert {group.served_by(a) for a in answers} == {0}  # waited for chat; never the fallback
    assert group.fakes[1].requests == []


def test_a_full_queue_spills_to_the_next_priority_when_the_alias_says_so(
    replicas_factory: Any,
) -> None:
    group = replicas_factory(
        1, slots=1, fallback=True, llm_first_byte_timeout=10.0,
        extra="router_settings: {alias_settings: {chat: {queue_size: 0, spill: true}}}",
    )  # fmt: skip
    group.fakes[0].fault("slow", delay=0.8, times=1)
    with group.client() as client:
        first = concurrent.futures.ThreadPoolExecutor(1).submit(turn, client, "slow one")
        wait_until(lambda: group.fakes[0].in_flight == 1, 5, "the replica busy")
        spilled = turn(client, "spilled")
        assert first.result().status_code == 200
    assert group.served_by(spilled) == 1


# --- affinity ----------------------------------------------------------------------------


def test_a_conversation_stays_on_its_replica_across_turns(replicas_factory: Any) -> None:
    group = replicas_factory(3, slots=4)
    with group.client() as client:
        for name in ("alpha", "beta", "gamma", "delta"):
            homes = {group.served_by(turn(client, f"{name}: hi", turns=n)) for n in range(1, 6)}
            assert len(homes) == 1, (name, homes)


def test_conversations_that_share_a_system_prompt_still_spread(replicas_factory: Any) -> None:
    group = replicas_factory(2, slots=8)
    with group.client() as client:
        homes = Counter(group.served_by(turn(client, f"conversation {i}")) for i in range(40))
    assert min(homes[0], homes[1]) >= 10, homes


def test_a_session_header_and_the_user_field_name_the_conversation(replicas_factory: Any) -> None:
    group = replicas_factory(3, slots=8)
    with group.client() as client:
        by_header = {group.served_by(turn(client, f"different {i}", headers={
            "x-session-id": "one-session"})) for i in range(6)}  # fmt: skip
        by_user = {group.served_by(turn(client, f"other {i}", user="ada")) for i in range(6)}
    assert len(by_header) == 1 and len(by_user) == 1


def test_a_conversation_whose_replica_dies_re_pins_once(replicas_factory: Any) -> None:
    group = replicas_factory(3, slots=4)
    with group.client() as client:
        home = group.served_by(turn(client, "story", turns=1))
        server = next(s for s in group.gateway.table.servers.values()
                      if group.urls[home] in s.spec.api_base)  # fmt: skip
        group.fakes[home].health_status = 503  # restarting: loading its model
        wait_until(lambda: not server.routable, 5, "the replica out")
        moved = {group.served_by(turn(client, "story", turns=n)) for n in range(2, 6)}
        group.fakes[home].heal()
        wait_until(lambda: server.routable, 5, "the replica back")
        after = {group.served_by(turn(client, "story", turns=n)) for n in range(6, 9)}
    assert len(moved) == 1 and home not in moved  # one new replica, not a scatter
    assert after == moved  # it stays where its cache now is


# --- admission ---------------------------------------------------------------------------


def test_the_slot_count_comes_from_the_server_or_the_routing_file(replicas_factory: Any) -> None:
    read = replicas_factory(1, slots=3)
    given = replicas_factory(1, slots=3, params=", max_parallel_requests: 1")
    with read.client() as a, given.client() as b:
        limits = [next(iter(c.get("/health").json()["deployments"].values()))["limit"]
                  for c in (a, b)]  # fmt: skip
    assert limits == [3, 1]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_full_queue_answers_429_in_the_clients_protocol(replicas_factory: Any, path: str) -> None:
    group = replicas_factory(
        1, slots=1, llm_first_byte_timeout=10.0,
        extra="router_settings: {alias_settings: {chat: {queue_size: 1}}}",
    )  # fmt: skip
    group.fakes[0].fault("slow", delay=1.0, times=2)
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    with group.client() as client, concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, path, json=body)
        wait_until(lambda: group.fakes[0].in_flight == 1, 5, "the slot taken")
        queued = pool.submit(client.post, path, json=body)
        wait_until(lambda: group.gateway.admission.depth("chat") == 1, 5, "one waiting")
        refused = client.post(path, json=body)
        health = client.get("/health").json()
        assert running.result().status_code == 200 and queued.result().status_code == 200
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    if path == "/v1/messages":
        assert refused.json()["error"]["type"] == "rate_limit_error"
    else:
        assert refused.json()["error"]["code"] == "queue_full"
    assert health["queues"]["chat"] == 1


def test_the_deadline_holds_while_a_request_waits(replicas_factory: Any) -> None:
    group = replicas_factory(1, slots=1, llm_request_timeout=1.0, llm_first_byte_timeout=10.0)
    group.fakes[0].fault("slow", delay=0.9, times=1)
    with group.client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(turn, client, "long")
        wait_until(lambda: group.fakes[0].in_flight == 1, 5, "the slot taken")
        group.fakes[0].fault("slow", delay=5.0)
        waited = turn(client, "waits")
        busy.result()
    assert waited.status_code == 504
    assert waited.json()["error"]["code"] in ("queue_timeout", "deadline_exceeded")
    metrics = group.gateway.metrics.queue_seconds.labels("chat")
    assert metrics._sum.get() > 0  # the wait was measured


def test_interactive_requests_go_before_batch_ones(replicas_factory: Any) -> None:
    group = replicas_factory(1, slots=1, llm_first_byte_timeout=10.0)
    fake = group.fakes[0]
    fake.fault("slow", delay=0.6, times=1)
    order: list[str] = []
    lock = threading.Lock()

    def ask(client: httpx.Client, name: str, priority: str) -> None:
        answer = turn(client, name, headers={"x-priority": priority})
        assert answer.status_code == 200
        with lock:
            order.append(name)

    with group.client() as client, concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = pool.submit(ask, client, "first", "interactive")
        wait_until(lambda: fake.in_flight == 1, 5, "the slot taken")
        batch = pool.submit(ask, client, "batch", "batch")
        wait_until(lambda: group.gateway.admission.depth("chat") == 1, 5, "batch waiting")
        interactive = pool.submit(ask, client, "interactive", "interactive")
        wait_until(lambda: group.gateway.admission.depth("chat") == 2, 5, "both waiting")
        for future in (first, batch, interactive):
            future.result()
        bad = turn(client, "x", headers={"x-priority": "urgent"})
    served = [r["messages"][1]["content"] for r in fake.requests]
    assert served == ["first", "interactive", "batch"]
    assert bad.status_code == 400


# --- reloads -----------------------------------------------------------------------------


def test_reload_swaps_the_table_in_flight_requests_finish_and_a_broken_file_is_refused(
    tmp_path: Path,
) -> None:
    one, two = FakeUpstream("one"), FakeUpstream("two")
    path = tmp_path / "routing.yaml"
    with serve_in_thread(one.app()) as url_one, serve_in_thread(two.app()) as url_two:

        def write(url: str) -> None:
            path.write_text(f"model_list:\n  - {{model_name: chat, litellm_params: "
                            f"{{api_base: '{url}/v1'}}}}\n")  # fmt: skip

        write(url_one)
        settings = Settings(
            _env_file=None, gateway_config=path, **{**FAST, "llm_first_byte_timeout": 10.0}
        )  # type: ignore[arg-type]
        app = create_gateway_app(settings, load_routing(settings, {}))
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            one.fault("slow", delay=0.8, times=1)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(turn, client, "started before")
                wait_until(lambda: one.in_flight == 1, 5, "a request in flight")
                write(url_two)
                reloaded = client.post("/admin/reload")
                after = turn(client, "after")
                assert in_flight.result().status_code == 200  # finished on the old table
            path.write_text("model_list: [{model_name: chat}]\n")
            broken = client.post("/admin/reload")
            still = turn(client, "still")
    assert reloaded.status_code == 200, reloaded.text
    assert [r["messages"][1]["content"] for r in one.requests] == ["started before"]
    served_by_two = [r["messages"][1]["content"] for r in two.requests]
    assert after.status_code == 200 and still.status_code == 200
    assert served_by_two == ["after", "still"]  # the broken file left the new table in place
    assert broken.status_code == 400 and "litellm_params" in broken.json()["error"]["message"]
