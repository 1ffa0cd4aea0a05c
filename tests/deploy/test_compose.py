"""deploy/compose.yml: rendered from the module, accepted by docker-compose, following the
rules of the issue, and in agreement with the launcher of the one-machine mode."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.deploy.compose import (
    GRAFANA_DASHBOARDS,
    GRAFANA_IMAGE,
    LOCAL,
    MONITORING_PORTS,
    MONITORING_PROFILE,
    PROMETHEUS_IMAGE,
    main,
    render_compose,
    render_compose_template,
    render_gpu_override,
)
from localsuite.deploy.containers import (
    BUNDLED_GGUF,
    DEPENDS_ON,
    LLAMA_CUDA_IMAGE,
    LLAMA_IMAGE,
    LOCAL_LLAMA_IMAGE,
    PYTHON_SERVICES,
    QDRANT_IMAGE,
    SUITE_IMAGE,
    container_port,
    model_file,
)
from localsuite.deploy.values import ConcreteValues
from localsuite.inference.command import inference_plan
from localsuite.inference.registry import ModelRegistry
from localsuite.supervisor.services import PRESETS, build_services

from .conftest import DEPLOY, REPO, ComposeConfig, Port, normalise_depends_on, normalise_ports

COMPOSE = DEPLOY / "compose.yml"
GPU = DEPLOY / "compose.gpu.yml"
INFERENCE = ("inference-chat", "inference-code")


MONITORING = set(MONITORING_PORTS)


def published_port(service: str) -> int:
    return MONITORING_PORTS.get(service) or container_port(service)


def expected_services(preset: str) -> set[str]:
    names = set(PRESETS[preset])
    return names | {"qdrant"} if "rag" in names else names


def in_profile(config: dict[str, Any], preset: str) -> set[str]:
    return {n for n, s in config["services"].items() if preset in s.get("profiles", [])}


def test_the_files_in_deploy_are_what_the_module_renders() -> None:
    hint = "regenerate: .venv/bin/python -m localsuite.deploy.compose {} > deploy/{}"
    assert COMPOSE.read_text() == render_compose_template(), hint.format("--template", COMPOSE.name)
    assert GPU.read_text() == render_gpu_override(), hint.format("--gpu", GPU.name)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_docker_compose_accepts_every_profile(
    compose_config: ComposeConfig, preset: str, gpu: bool
) -> None:
    config = compose_config([COMPOSE, GPU] if gpu else [COMPOSE], profile=preset)
    assert in_profile(config, preset) == expected_services(preset)
    for name in INFERENCE:
        if name in config["services"]:
            assert config["services"][name]["image"] == (LLAMA_CUDA_IMAGE if gpu else LLAMA_IMAGE)


def test_every_service_follows_the_rules(compose_config: ComposeConfig) -> None:
    services = compose_config([COMPOSE])["services"]
    assert set(services) == expected_services("p3") | MONITORING
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] == "CMD" and len(check["test"]) > 1, name
        assert not check.get("disable"), name
        assert service["restart"] == "unless-stopped", name
        ports = normalise_ports(service)
        assert ports and all(p.host_ip == "127.0.0.1" for p in ports), name
        assert {p.target for p in ports} == {published_port(name)}, name
        for dependency, condition in normalise_depends_on(service).items():
            assert condition == "service_healthy", (name, dependency)
            # A dependency must run in every profile its dependent runs in.
            assert set(service["profiles"]) <= set(services[dependency]["profiles"])
    assert {n for n, s in services.items() if "depends_on" in s} == set(DEPENDS_ON)
    assert all(services[n]["image"] == SUITE_IMAGE for n in PYTHON_SERVICES)
    assert services["qdrant"]["image"] == QDRANT_IMAGE


def test_the_monitoring_profile_runs_prometheus_and_grafana_on_loopback(
    compose_config: ComposeConfig,
) -> None:
    # HOST=0.0.0.0 publishes the suite's services everywhere; not these, which know no key.
    config = compose_config([COMPOSE], {"HOST": "0.0.0.0"}, profile=MONITORING_PROFILE)
    assert in_profile(config, MONITORING_PROFILE) == MONITORING
    services = config["services"]
    for name in MONITORING:
        assert services[name]["profiles"] == [MONITORING_PROFILE], name
        port = MONITORING_PORTS[name]
        assert normalise_ports(services[name]) == [Port("127.0.0.1", port, port)], name
        for mount in services[name]["volumes"]:
            assert mount["read_only"] and Path(mount["source"]).exists(), (name, mount)
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["image"] == PROMETHEUS_IMAGE and grafana["image"] == GRAFANA_IMAGE
    config_file = Path(prometheus["volumes"][0]["source"])
    assert config_file == DEPLOY / "monitoring" / "prometheus.yml"
    assert f"--config.file={prometheus['volumes'][0]['target']}" in prometheus["command"]

    # Grafana's provisioning points at the Compose Prometheus and at the mounted dashboard.
    mounts = {Path(m["source"]).name: m for m in grafana["volumes"]}
    provisioning = Path(mounts["provisioning"]["source"])
    assert mounts["provisioning"]["target"] == "/etc/grafana/provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["url"] == f"http://prometheus:{MONITORING_PORTS['prometheus']}"
    assert source["isDefault"]
    providers = yaml.safe_load((provisioning / "dashboards" / "localsuite.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS
    dashboard = mounts["localsuite.json"]
    assert Path(dashboard["source"]) == DEPLOY / "monitoring" / "grafana" / "localsuite.json"
    assert Path(dashboard["target"]).parent == Path(GRAFANA_DASHBOARDS)


def test_env_decides_ports_paths_models_and_flags(compose_config: ComposeConfig) -> None:
    env = {
        "HOST": "0.0.0.0",
        "API_GATEWAY_PORT": "9000",
        "INFERENCE_PORT": "9001",
        "MODELS_DIR": "/srv/models",
        "DATA_DIR": "/srv/data",
        "CHAT_MODEL": "Qwen2.5-3B-Instruct-Q4_K_M.gguf",
        "LLAMA_PARALLEL": "4",
        "LLM_REQUEST_TIMEOUT": "90",
    }
    services = compose_config([COMPOSE], env)["services"]
    assert normalise_ports(services["api-gateway"]) == [Port("0.0.0.0", 9000, 8000)]
    assert normalise_ports(services["inference-chat"]) == [Port("0.0.0.0", 9001, 8001)]
    command = services["inference-chat"]["command"]
    assert command[command.index("--model") + 1] == "/models/Qwen2.5-3B-Instruct-Q4_K_M.gguf"
    assert command[command.index("--parallel") + 1] == "4"
    mounts = {m["target"]: m for m in services["inference-chat"]["volumes"]}
    assert mounts["/models"]["source"] == "/srv/models" and mounts["/models"]["read_only"]
    assert services["rag"]["volumes"][0]["source"] == "/srv/data"
    assert services["qdrant"]["volumes"][0]["source"] == "/srv/data/qdrant"
    gateway_env = services["api-gateway"]["environment"]
    assert gateway_env["LLM_REQUEST_TIMEOUT"] == "90"
    # Inside its container a service listens on the spec's port, on every interface.
    assert gateway_env["HOST"] == "0.0.0.0" and gateway_env["API_GATEWAY_PORT"] == "8000"
    assert gateway_env["INFERENCE_CHAT_URL"] == "http://inference-chat:8001/v1"


ENV_VARIANTS = {
    "defaults": {},
    "custom": {
        "HOST": "0.0.0.0",
        "API_GATEWAY_PORT": "9000",
        "EMBEDDING_PORT": "9003",
        "CHAT_MODEL": "Qwen2.5-3B-Instruct-Q4_K_M.gguf",
        "CODE_MODEL": "qwen2.5-coder-7b-instruct-q4_k_m.gguf",
        "LLAMA_THREADS": "3",
        "LLAMA_TEMP": "0.2",
        "INFERENCE_START_PERIOD": "300",
        "EMBEDDING_BACKEND": "fastembed",
        "GATEWAY_RETRY_BACKOFF": "0.125",
        "SUPERVISOR_HEALTH_INTERVAL": "2",
        "LOCALSUITE_API_KEY": "s3cret",
    },
    "gpu": {"CHAT_N_GPU_LAYERS": "40", "CODE_N_GPU_LAYERS": "99"},
}


@pytest.mark.parametrize("variant", list(ENV_VARIANTS))
def test_the_file_for_a_configuration_is_the_template_with_its_env(
    compose_config: ComposeConfig, clean_settings_env: None, tmp_path: Path, variant: str
) -> None:
    env = {"MODELS_DIR": str(tmp_path / "models"), "DATA_DIR": str(tmp_path / "data")}
    env |= ENV_VARIANTS[variant]
    env_file = tmp_path / "variant.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    rendered = tmp_path / "rendered.yml"
    rendered.write_text(render_compose(Settings(_env_file=env_file)))
    template = [COMPOSE, GPU] if variant == "gpu" else [COMPOSE]
    assert compose_config([rendered], env) == compose_config(template, env)


def test_a_backend_with_gpu_layers_gets_the_cuda_image(clean_settings_env: None) -> None:
    services = yaml.safe_load(render_compose(Settings(_env_file=None, chat_n_gpu_layers=20)))[
        "services"
    ]
    assert services["inference-chat"]["image"] == LLAMA_CUDA_IMAGE
    assert services["inference-chat"]["deploy"]["resources"]["reservations"]["devices"]
    assert services["inference-code"]["image"] == LLAMA_IMAGE
    assert "deploy" not in services["inference-code"]


def test_monitoring_needs_a_checkout(
    clean_settings_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(_env_file=None)
    services = yaml.safe_load(render_compose(settings))["services"]
    assert services["prometheus"]["volumes"][0]["source"] == str(
        DEPLOY / "monitoring" / "prometheus.yml"
    )
    monkeypatch.setattr(ConcreteValues, "build", lambda self: None)  # an installed wheel
    assert not MONITORING & set(yaml.safe_load(render_compose(settings))["services"])


def test_secrets_are_never_written(clean_settings_env: None) -> None:
    settings = Settings(_env_file=None, localsuite_api_key="s3cret")
    text = render_compose(settings)
    assert "s3cret" not in text
    assert "LOCALSUITE_API_KEY: ${LOCALSUITE_API_KEY:?set LOCALSUITE_API_KEY in .env" in text


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("", BUNDLED_GGUF),
        ("bundled", BUNDLED_GGUF),
        ("Qwen2.5-3B-Instruct-Q4_K_M", "Qwen2.5-3B-Instruct-Q4_K_M.gguf"),
        ("qwen2.5-coder-7b-instruct-q4_k_m.gguf", "qwen2.5-coder-7b-instruct-q4_k_m.gguf"),
    ],
)
def test_a_model_name_means_a_file_in_models_dir(name: str, file: str) -> None:
    assert model_file(name) == file


def test_a_model_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a path"):
        model_file("../elsewhere/x.gguf")


# --- the local variant: what `make compose-test` runs -----------------------------------------


@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_local_variant_has_no_qdrant_server_and_local_images(
    compose_config: ComposeConfig, clean_settings_env: None, tmp_path: Path, preset: str
) -> None:
    settings = Settings(_env_file=None, models_dir=tmp_path / "m", data_dir=tmp_path / "d")
    rendered = tmp_path / "local.yml"
    rendered.write_text(render_compose(settings, LOCAL))
    services = compose_config([rendered], profile=preset)["services"]
    assert in_profile({"services": services}, preset) == set(PRESETS[preset])  # no qdrant
    assert "qdrant" not in services and not MONITORING & set(services)  # registry images
    for name, service in services.items():
        assert "build" not in service, name  # built beforehand by deploy/local-engine.sh
        expected = LOCAL_LLAMA_IMAGE if name in INFERENCE else SUITE_IMAGE
        assert service["image"] == expected, name
        for dependency, condition in normalise_depends_on(service).items():
            assert condition == "service_healthy" and dependency in services, (name, dependency)
        if name in PYTHON_SERVICES:
            assert service["environment"]["QDRANT_URL"] == ""  # rag's embedded Qdrant
    if "rag" in services:
        assert set(normalise_depends_on(services["rag"])) == {"embedding", "api-gateway"}
        assert services["rag"]["volumes"][0]["source"] == str(tmp_path / "d")


def test_the_local_variant_from_the_command_line(
    clean_settings_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--local"]) == 0
    services = yaml.safe_load(capsys.readouterr().out)["services"]
    assert "qdrant" not in services
    assert services["inference-chat"]["image"] == LOCAL_LLAMA_IMAGE
    assert main([]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["services"]["qdrant"]["image"] == QDRANT_IMAGE


# --- the one-machine mode and Compose agree -------------------------------------------------


@pytest.mark.parametrize("preset", list(PRESETS))
def test_compose_and_the_launcher_run_the_same_services(
    clean_settings_env: None, preset: str
) -> None:
    settings = Settings(_env_file=None)
    specs = build_services(settings, preset)
    services = yaml.safe_load(render_compose_template())["services"]
    assert {s.name for s in specs} | ({"qdrant"} if "rag" in PRESETS[preset] else set()) == {
        n for n, s in services.items() if preset in s["profiles"]
    }
    concrete = yaml.safe_load(render_compose(settings))["services"]
    for spec in specs:
        service = concrete[spec.name]
        assert spec.port == container_port(spec.name)
        # The same health path, after the same start period.
        assert urlsplit(spec.health.url).path == urlsplit(service["healthcheck"]["test"][-1]).path
        period = float(service["healthcheck"]["start_period"].removesuffix("s"))
        assert period == spec.health.start_period
        # Compose waits for a subset of what the launcher waits for (it cannot say "any
        # one of"), plus Qdrant, which runs embedded in rag on one machine.
        compose_deps = set(DEPENDS_ON.get(spec.name, ())) - {"qdrant"}
        if spec.any_dependency:
            assert compose_deps and compose_deps <= set(spec.depends_on)
        else:
            assert compose_deps == set(spec.depends_on)


def pairs(argv: list[str]) -> dict[str, str | None]:
    """Flags and their values; a flag followed by another flag has none."""
    out: dict[str, str | None] = {}
    for i, item in enumerate(argv):
        if item.startswith("--"):
            following = argv[i + 1] if i + 1 < len(argv) else None
            out[item] = None if following is None or following.startswith("--") else following
    return out


@pytest.mark.parametrize("service", INFERENCE)
@pytest.mark.parametrize("threads", [0, 3])
def test_llama_server_gets_the_flags_of_the_launcher(
    clean_settings_env: None, tmp_path: Path, service: str, threads: int
) -> None:
    (tmp_path / "Qwen2.5-3B-Instruct-Q4_K_M.gguf").write_bytes(b"GGUF")
    settings = Settings(
        _env_file=None,
        models_dir=tmp_path,
        chat_model="Qwen2.5-3B-Instruct-Q4_K_M",
        code_n_gpu_layers=12,
        llama_parallel=3,
        llama_ctx_size=8192,
        llama_threads=threads,
        llama_temp=0.25,
        llama_cache_ram_mb=-1,
    )
    plan = inference_plan(service, settings, ModelRegistry(tmp_path), binary=Path("/bin/true"))
    launcher = pairs(plan.argv[1:])
    compose = pairs(yaml.safe_load(render_compose(settings))["services"][service]["command"])
    assert list(compose) == list(launcher)  # the same flags, in the same order
    model = Path(str(launcher.pop("--model")))
    assert compose.pop("--model") == f"/models/{model.name}"
    assert compose.pop("--alias") == model.name and launcher.pop("--alias") == model.stem
    assert compose.pop("--host") == "0.0.0.0" and launcher.pop("--host") == settings.host
    if threads == 0:  # the launcher halves this machine's cores; a container takes its own
        assert compose.pop("--threads") == "0" and launcher.pop("--threads") != "0"
    assert compose == launcher


# --- Qdrant's healthcheck, run by bash as Docker would ---------------------------------------


@contextmanager
def http_answering(status: int) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b"all shards are ready" if status == 200 else b"not ready"
            self.send_response(status if self.path == "/readyz" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def qdrant_check(port: int) -> int:
    test = yaml.safe_load(render_compose_template())["services"]["qdrant"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    script = test[3].replace("$$", "$").replace("/6333", f"/{port}")
    done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30, check=False)
    return done.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_qdrant_healthcheck_reads_readyz(status: int, healthy: bool) -> None:
    with http_answering(status) as port:
        assert (qdrant_check(port) == 0) is healthy


def test_the_qdrant_healthcheck_fails_when_nothing_listens() -> None:
    with http_answering(200) as port:
        pass  # closed again: nothing listens on that port now
    assert qdrant_check(port) != 0


def test_compose_refuses_to_run_without_the_key(docker_compose: str, tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    done = subprocess.run(
        [docker_compose, "--project-directory", str(REPO), "--env-file", str(env_file),
         "-f", str(REPO / "deploy" / "compose.yml"), "--profile", "p1", "config"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip
    assert done.returncode != 0
    assert "LOCALSUITE_API_KEY" in done.stderr and "localsuite compose" in done.stderr


def test_chat_replicas_are_services_behind_the_gateway(clean_settings_env: None) -> None:
    from localsuite.gateway.config import default_routing

    text = render_compose(Settings(_env_file=None, chat_replicas=3))
    services = yaml.safe_load(text)["services"]
    first = services["inference-chat"]
    for name in ("inference-chat-2", "inference-chat-3"):
        twin = services[name]
        assert twin["command"] == first["command"] and twin["image"] == first["image"]
        assert twin["healthcheck"] == first["healthcheck"] and "ports" not in twin
    env = services["api-gateway"]["environment"]
    assert env["CHAT_REPLICAS"] == "3"
    routing = default_routing(Settings(_env_file=None, **{k.lower(): v for k, v in env.items()
                                                           if "KEY" not in k}))  # fmt: skip
    group = [routing.servers[r.deployment].api_base for r in routing.groups("chat-7b")[0]]
    assert group == ["http://inference-chat:8001/v1", "http://inference-chat-2:8001/v1",
                     "http://inference-chat-3:8001/v1"]  # fmt: skip
    template = yaml.safe_load(render_compose_template())["services"]
    assert "inference-chat-2" not in template  # the template runs one: CHAT_REPLICAS is fixed
