"""The suite's Compose stack on a real engine, as the seed's acceptance scenarios say:
health-ordered start, every healthcheck passing, a killed inference container restarted
by Docker while the gateway serves on, the embedding container killed under an index
job, and `down` leaving nothing behind. In this order, on one stack (see conftest.py)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

from localsuite.core.settings import Settings
from localsuite.deploy.compose import LOCAL
from localsuite.deploy.containers import depends_on
from localsuite.rag.jobstore import JobStore
from localsuite.supervisor.services import PRESETS
from localsuite.testing.documents import write_generated_corpus
from localsuite.testing.load import Load
from localsuite.testing.servers import wait_until

from .conftest import API_KEY, AUTH, FIGURES, LOGS, PROFILE
from .stack import ComposeStack, published

UP_WITHIN = 300.0  # every image is local; the embedding model loads in seconds
RESTART_WITHIN = 30.0  # the seed's acceptance bound; the figure is printed
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def embedding_back_within(settings: Settings) -> float:
    """What Compose gives a restarted embedding container: its start period (torch and
    the model load first), then the checks that must pass after it."""
    interval = settings.supervisor_health_interval + settings.supervisor_health_timeout
    return settings.embedding_start_period + interval * (settings.supervisor_health_retries + 1)


def url(settings: Settings, field_name: str) -> str:
    return f"http://127.0.0.1:{getattr(settings, field_name)}"


def expected_services() -> set[str]:
    return set(PRESETS[PROFILE])  # embedded Qdrant: no `qdrant` service in this variant


def kill_main_process(stack: ComposeStack, service: str) -> tuple[int, float]:
    """SIGKILL of the container's main process from the host, as a crash is: not
    `docker kill`, which Docker counts as a manual stop and does not restart.
    Returns the restart count before it, and when it was sent."""
    state = stack.inspect(service)
    pid = int(state["State"]["Pid"])
    assert pid > 0 and state["State"]["Running"], f"{service} is not running"
    os.kill(pid, signal.SIGKILL)
    return int(state["RestartCount"]), time.monotonic()


def test_up_starts_in_health_order_and_every_check_passes(
    stack: ComposeStack, settings: Settings
) -> None:
    assert set(stack.services()) == expected_services()
    began_wall, began = time.time(), time.monotonic()
    stack.compose("up", "-d")
    services = sorted(expected_services())
    wait_until(
        lambda: all(stack.health(s) == "healthy" for s in services),
        UP_WITHIN,
        "every service of the stack to be healthy",
    )
    FIGURES["up to all healthy (s)"] = round(time.monotonic() - began, 2)

    # Health order, from the engine's own events: a service started only after each of
    # its dependencies had passed a healthcheck.
    events = stack.events(began_wall - 1, time.time() + 1)
    started = {e.service: e.at for e in reversed(events) if e.action == "start"}
    healthy = {e.service: e.at for e in reversed(events) if e.action == "health_status: healthy"}
    assert set(started) == set(services) and set(healthy) == set(services), events
    for service in services:
        for dependency in depends_on(service, embedded_qdrant=LOCAL.embedded_qdrant):
            assert started[service] > healthy[dependency], (
                f"{service} started before {dependency} was healthy"
            )

    for service in services:
        inspected = stack.inspect(service)
        assert inspected["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        ports = published(inspected)
        assert ports and all(host == "127.0.0.1" for host, _ in ports), (service, ports)

    gateway = url(settings, "api_gateway_port")
    with httpx.Client(headers=AUTH, base_url=gateway, timeout=60) as client:
        for alias, first in (("chat-7b", "inference-chat"), ("code-7b", "inference-code")):
            answer = client.post("/v1/chat/completions", json={"model": alias, **CHAT})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-localsuite-backend"] == first
            assert answer.json()["choices"][0]["message"]["content"] is not None
        assert client.get("/health").status_code == 200
    for name in ("rag_port", "embedding_port", "mcp_port"):
        assert httpx.get(f"{url(settings, name)}/health", timeout=10).status_code == 200, name


@dataclass
class Served:
    """Plain requests every 100 ms on `chat-7b`: who served each, and when."""

    base_url: str
    seen: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        return thread

    def _loop(self) -> None:
        with httpx.Client(headers=AUTH, base_url=self.base_url, timeout=60) as client:
            for _ in range(2000):  # a bound whatever happens
                if self.stop.is_set():
                    return
                body = {"model": "chat-7b", **CHAT, "max_tokens": 1}
                try:
                    answer = client.post("/v1/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if answer.status_code == 200:
                        self.seen.append((time.monotonic(), answer.headers["x-localsuite-backend"]))
                    else:
                        self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                self.stop.wait(0.1)

    def served_by(self, backend: str, after: float) -> float | None:
        return next((t for t, b in self.seen if t > after and b == backend), None)


def test_inference_chat_killed_under_load_is_restarted_and_nothing_fails(
    stack: ComposeStack, settings: Settings
) -> None:
    gateway = url(settings, "api_gateway_port")
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    load = Load(sdk, max_requests=2000)
    served = Served(gateway)
    workers = load.run(streams=1, plains=2)
    prober = served.run()
    try:
        wait_until(lambda: load.count() >= 6, 120, "steady load through the gateway")
        wait_until(lambda: served.served_by("inference-chat", 0) is not None, 30, "chat serving")
        before, killed = kill_main_process(stack, "inference-chat")
        FIGURES["requests before the kill"] = load.count() + len(served.seen)

        def restarted() -> bool:
            inspected = stack.inspect("inference-chat")
            state = inspected["State"]
            return (
                int(inspected["RestartCount"]) > before
                and state["Running"]
                and state["Health"]["Status"] == "healthy"
            )

        wait_until(restarted, RESTART_WITHIN, "inference-chat restarted by Docker and healthy")
        healthy_after = time.monotonic() - killed
        wait_until(
            lambda: served.served_by("inference-chat", killed) is not None,
            RESTART_WITHIN,
            "the gateway to serve from inference-chat again",
        )
        serving_at = served.served_by("inference-chat", killed)
        assert serving_at is not None
        # A steady run after the recovery too.
        after = load.count()
        wait_until(lambda: load.count() >= after + 6, 120, "load after the recovery")
    finally:
        served.stop.set()
        load.finish(workers)
        prober.join(timeout=120)
    inspected = stack.inspect("inference-chat")
    assert int(inspected["RestartCount"]) == before + 1
    assert load.failures == [] and served.failures == [], load.failures + served.failures
    FIGURES["kill of inference-chat to healthy again (s)"] = round(healthy_after, 2)
    FIGURES["kill of inference-chat to serving through the gateway again (s)"] = round(
        serving_at - killed, 2
    )
    FIGURES["requests during the kill run (load + probe)"] = len(load.done) + len(served.seen)
    FIGURES["failed requests"] = len(load.failures) + len(served.failures)
    FIGURES["restart count of inference-chat"] = f"{before} -> {inspected['RestartCount']}"


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def finished(client: httpx.Client, job_id: str) -> bool:
    state = job(client, job_id)["state"]
    assert state not in ("failed", "cancelled"), job(client, job_id)
    return bool(state == "done")


def ledgers(data_dir: Path, copy_to: Path, *collections: str) -> dict[str, dict[str, Any]]:
    """Per collection and source, rag's ledger of chunk ids: read from a copy of its
    job store, so that nothing of this (root) process writes into rag's files."""
    copy_to.mkdir(parents=True, exist_ok=True)
    for path in (data_dir / "rag").glob("jobs.sqlite*"):
        shutil.copy(path, copy_to / path.name)
    store = JobStore(copy_to / "jobs.sqlite")
    try:
        return {c: {s: store.ledger(c, s) for s in store.sources(c)} for c in collections}
    finally:
        store.close()


def test_embedding_killed_during_an_index_job_loses_no_chunk(
    stack: ComposeStack, settings: Settings, tmp_path: Path
) -> None:
    corpus = settings.data_dir / "documents" / "corpus"
    write_generated_corpus(corpus, files=40, paragraphs=8)
    inside = "/data/documents/corpus"  # DATA_DIR is mounted at /data
    with httpx.Client(headers=AUTH, base_url=url(settings, "rag_port"), timeout=60) as client:
        accepted = client.post(
            "/index",
            params={"collection": "chaos"},
            json={"paths": [inside]},
            headers={"Prefer": "respond-async"},  # the job at once: it is killed under it
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job"]["id"]
        wait_until(lambda: job(client, job_id)["chunks_added"] > 0, 120, "the job to write")
        assert job(client, job_id)["state"] != "done", "the job ended before the kill"
        before, killed = kill_main_process(stack, "embedding")

        # Meanwhile: 503 + Retry-After, from /query (bounded by the retrieval deadline)
        # and from /health, which names the dependency.
        refused = client.post(
            "/query", json={"query": "harbour", "collection": "chaos", "generate": False}
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"]
        assert refused.json()["error"]["code"] == "embedding_unavailable"
        health = client.get("/health")
        assert health.status_code == 503 and health.headers["Retry-After"], health.text
        assert health.json()["checks"]["embedding"]["ok"] is False

        wait_until(
            lambda: (
                int(stack.inspect("embedding")["RestartCount"]) > before
                and stack.health("embedding") == "healthy"
            ),
            embedding_back_within(settings),
            "the embedding container restarted and healthy",
        )
        FIGURES["kill of embedding to healthy again (s)"] = round(time.monotonic() - killed, 2)
        wait_until(lambda: finished(client, job_id), 300, "the interrupted job to finish")
        interrupted = job(client, job_id)

        clean = client.post("/index", params={"collection": "clean"}, json={"paths": [inside]},
                            headers={"Prefer": "respond-async"})  # fmt: skip
        assert clean.status_code == 202, clean.text
        wait_until(lambda: finished(client, clean.json()["job"]["id"]), 300, "a clean run")
        counts = {c["name"]: c["points"] for c in client.get("/collections").json()["collections"]}
        answer = client.post(
            "/query", json={"query": "harbour", "collection": "chaos", "generate": False}
        )
        assert answer.status_code == 200, answer.text

    assert counts["chaos"] == counts["clean"] > 0
    assert interrupted["files_failed"] == 0 and interrupted["chunks_added"] == counts["chaos"]
    books = ledgers(settings.data_dir, tmp_path / "ledger", "chaos", "clean")
    assert books["chaos"].keys() == books["clean"].keys()
    for source, entry in books["chaos"].items():
        assert entry is not None and books["clean"][source] is not None
        assert entry.chunk_ids == books["clean"][source].chunk_ids, source
    FIGURES["chunks indexed across the embedding kill (= a clean run)"] = counts["chaos"]


def test_down_leaves_no_container_network_or_volume(
    stack: ComposeStack, settings: Settings
) -> None:
    mounts = [m for s in expected_services() for m in stack.inspect(s)["Mounts"]]
    assert mounts and all(m["Type"] == "bind" for m in mounts), mounts  # no volume made
    stack.save_logs(LOGS)
    began = time.monotonic()
    stack.compose("down")
    FIGURES["down (s)"] = round(time.monotonic() - began, 2)
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    # What is kept is the data on the host, in DATA_DIR: rag's job store and vectors.
    assert (settings.data_dir / "rag" / "jobs.sqlite").is_file()
