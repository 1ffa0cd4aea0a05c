"""The Compose file of the suite, rendered from the facts the one-machine mode runs on.

One builder, three renderings, so the two modes cannot drift apart:

- `render_compose_template()` is `deploy/compose.yml`. It is driven by `.env` through
  Compose's interpolation (`${LLAMA_PARALLEL:-2}`), and every default is the default in
  `core/settings.py`.
- `render_gpu_override()` is `deploy/compose.gpu.yml`: llama.cpp's CUDA image, a GPU
  reservation, and every layer offloaded unless `CHAT_N_GPU_LAYERS`/`CODE_N_GPU_LAYERS`
  say otherwise.
- `render_compose(settings)` is the same file with this configuration's values written
  in (absolute paths, the ports and models of `.env`). A backend whose `*_N_GPU_LAYERS`
  is not 0 gets the CUDA image and a GPU. Secrets stay `${NAME}` references.
  `render_compose(settings, LOCAL)` is the variant `deploy/local-engine.sh` runs where no
  registry image can be pulled: rag's embedded Qdrant instead of the Qdrant server, and
  the llama-servers from the suite's own `inference` image, all images built beforehand.

Profile `monitoring` adds Prometheus and Grafana, configured by the files in
`deploy/monitoring/`: Prometheus scrapes every Python service's `/metrics`, Grafana shows
them on the suite's dashboard. They are left out where those files or registry images are
not at hand: a rendering from an installed wheel, and the local variant.

The facts (images, ports, profiles, dependencies, the settings fixed inside a
container) are in `containers.py`; where the values come from is in `values.py`. Inside
a container a service listens on `0.0.0.0` at the spec's port and finds the others by
service name; `HOST` and the `*_PORT` variables only choose where ports are published.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from typing import Any

import yaml

from localsuite.core.settings import Settings
from localsuite.deploy.containers import (
    DATA_MOUNT,
    GPU_ALL_LAYERS,
    INFERENCE_SERVICES,
    LLAMA_CUDA_IMAGE,
    LLAMA_IMAGE,
    LOCAL_LLAMA_IMAGE,
    MODELS_MOUNT,
    PORT_SETTINGS,
    PYTHON_SERVICES,
    QDRANT_IMAGE,
    QDRANT_PORT,
    SERVICE_ORDER,
    SUITE_IMAGE,
    container_port,
    container_settings,
    depends_on,
    profiles,
)
from localsuite.deploy.values import ComposeValues, ConcreteValues, TemplateValues
from localsuite.supervisor.services import replica_name


@dataclass(frozen=True, slots=True)
class Variant:
    """What a rendering changes in the suite's default file.

    `embedded_qdrant`: no `qdrant` service; rag keeps its vectors in its embedded Qdrant
    under DATA_DIR, as on one machine. `llama_image`: the CPU llama-servers' image.
    `build`: whether the Python services say how to build their image (without it,
    Compose expects the image to exist). `monitoring`: Prometheus and Grafana, in profile
    `monitoring`.
    """

    embedded_qdrant: bool = False
    llama_image: str = LLAMA_IMAGE
    build: bool = True
    monitoring: bool = True


DEFAULT = Variant()
# deploy/local-engine.sh: no image can be pulled, no Qdrant server exists; it builds
# both images first (deploy/Dockerfile's `suite` and `inference` targets).
LOCAL = Variant(embedded_qdrant=True, llama_image=LOCAL_LLAMA_IMAGE, build=False, monitoring=False)

PROMETHEUS_IMAGE = "prom/prometheus:v2.53.4"  # 2.x, as the Prometheus tests/monitoring run
GRAFANA_IMAGE = "grafana/grafana:11.6.0"
MONITORING_PROFILE = "monitoring"
MONITORING_PORTS = {"prometheus": 9090, "grafana": 3000}
GRAFANA_DASHBOARDS = "/etc/grafana/dashboards"  # provisioning/dashboards/localsuite.yml reads it


def _published(values: ComposeValues, service: str) -> str:
    port = container_port(service)
    outside = values.setting(PORT_SETTINGS[service]) if service in PORT_SETTINGS else str(port)
    return f"{values.publish_host()}:{outside}:{port}"


def _bind(source: str, target: str, *, read_only: bool = False) -> dict[str, Any]:
    mount: dict[str, Any] = {"type": "bind", "source": source, "target": target}
    if read_only:
        mount["read_only"] = True
    return mount


def _healthcheck(values: ComposeValues, test: list[str], start_period: str) -> dict[str, Any]:
    """The cadence of the supervisor's health checks (`SUPERVISOR_HEALTH_*`), in Compose."""
    retries = values.setting("supervisor_health_retries")
    return {
        "test": test,
        "interval": f"{values.setting('supervisor_health_interval')}s",
        "timeout": f"{values.setting('supervisor_health_timeout')}s",
        "retries": int(retries) if retries.isdigit() else retries,
        "start_period": start_period,
    }


def _gpu_reservation() -> dict[str, Any]:
    device = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    return {"resources": {"reservations": {"devices": [device]}}}


def llama_command(service: str, values: ComposeValues) -> list[str]:
    """llama-server's flags in a container: those of `inference/command.py`."""
    prefix = "chat" if service == "inference-chat" else "code"
    model = values.model(f"{prefix}_model")
    return [
        "--model", f"{MODELS_MOUNT}/{model}",
        "--alias", model,
        "--host", "0.0.0.0",
        "--port", str(container_port(service)),
        "--ctx-size", values.setting("llama_ctx_size"),
        "--parallel", values.setting("llama_parallel"),
        # 0: every core the container may use (llama.cpp's own rule for 0)
        "--threads", values.setting("llama_threads"),
        "--n-gpu-layers", values.gpu_layers(f"{prefix}_n_gpu_layers"),
        "--temp", values.setting("llama_temp"),
        "--top-p", values.setting("llama_top_p"),
        "--repeat-penalty", values.setting("llama_repeat_penalty"),
        "--cache-ram", values.setting("llama_cache_ram_mb"),
        "--no-webui",
        "--metrics",
    ]  # fmt: skip


# bash's /dev/tcp: the Qdrant image has bash, but no curl or wget. `$$` is Compose's `$`.
QDRANT_READY = (
    f"exec 3<>/dev/tcp/127.0.0.1/{QDRANT_PORT}"
    ' && printf "GET /readyz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n" >&3'
    ' && read -r -t 5 status <&3 && [[ $$status == *" 200 "* ]]'
)


def _inference(
    service: str, values: ComposeValues, variant: Variant, *, cuda: bool
) -> dict[str, Any]:
    port = container_port(service)
    spec: dict[str, Any] = {
        "image": LLAMA_CUDA_IMAGE if cuda else variant.llama_image,
        "profiles": profiles(service),
        "command": llama_command(service, values),
        # llama-server reads LLAMA_API_KEY for --api-key: the suite's key guards it too
        # (its /health stays open), and no command line shows it.
        "environment": {"LLAMA_API_KEY": values.setting("localsuite_api_key")},
        "volumes": [_bind(values.host_path("models_dir"), MODELS_MOUNT, read_only=True)],
        "ports": [_published(values, service)],
        "healthcheck": _healthcheck(
            values,
            ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}/health"],
            f"{values.setting('inference_start_period')}s",
        ),
        "restart": "unless-stopped",
    }
    if cuda:
        spec["deploy"] = _gpu_reservation()
    return spec


def _replicas(first: dict[str, Any], values: ComposeValues) -> dict[str, Any]:
    """inference-chat-2 ... for `CHAT_REPLICAS` (`localsuite compose` only: the template
    runs one): inference-chat's twins on the Compose network, which only the gateway
    calls, so their ports are not published."""
    out = {}
    for number in range(2, values.chat_replicas() + 1):
        twin = copy.deepcopy({k: v for k, v in first.items() if k != "ports"})  # no anchors
        out[replica_name("inference-chat", number)] = twin
    return out


def _python_env(values: ComposeValues, variant: Variant) -> dict[str, str]:
    """Every setting for every Python service: the container's own, then `.env`'s."""
    fixed = container_settings(embedded_qdrant=variant.embedded_qdrant)
    count = values.chat_replicas()
    fixed["CHAT_REPLICAS"] = str(count)  # as many as the file runs, not what .env says
    fixed["INFERENCE_CHAT_REPLICA_URLS"] = ",".join(
        # the twins listen on inference-chat's port, each at its own name
        f"http://{replica_name('inference-chat', n)}:{container_port('inference-chat')}/v1"
        for n in range(2, count + 1)
    )
    env = {}
    for field in Settings.model_fields:
        name = field.upper()
        env[name] = fixed[name] if name in fixed else values.setting(field)
    return env


def _python(
    service: str, values: ComposeValues, variant: Variant, env: dict[str, str]
) -> dict[str, Any]:
    port = container_port(service)
    spec: dict[str, Any] = {"image": SUITE_IMAGE}
    if variant.build and (build := values.build()) is not None:
        spec["build"] = build
    spec |= {"profiles": profiles(service), "command": ["serve", service], "environment": env}
    mounts = {
        "embedding": [_bind(values.host_path("models_dir"), MODELS_MOUNT, read_only=True)],
        "rag": [_bind(values.host_path("data_dir"), DATA_MOUNT)],
    }
    if service in mounts:
        spec["volumes"] = mounts[service]
    spec["ports"] = [_published(values, service)]
    if deps := depends_on(service, embedded_qdrant=variant.embedded_qdrant):
        spec["depends_on"] = {dep: {"condition": "service_healthy"} for dep in deps}
    probe = ["CMD", "python", "-m", "localsuite.deploy.probe"]
    url = f"http://127.0.0.1:{port}{PYTHON_SERVICES[service]}"
    start = "embedding_start_period" if service == "embedding" else "supervisor_start_period"
    spec["healthcheck"] = _healthcheck(values, [*probe, url], f"{values.setting(start)}s")
    spec["restart"] = "unless-stopped"
    spec["stop_grace_period"] = "15s"  # uvicorn drains requests for up to 10 s
    return spec


def _qdrant(values: ComposeValues) -> dict[str, Any]:
    return {
        "image": QDRANT_IMAGE,
        "profiles": profiles("qdrant"),
        "volumes": [_bind(values.host_path("data_dir", "qdrant"), "/qdrant/storage")],
        "ports": [_published(values, "qdrant")],
        "healthcheck": _healthcheck(values, ["CMD", "bash", "-c", QDRANT_READY], "30s"),
        "restart": "unless-stopped",
    }


def _monitoring_dir(values: ComposeValues) -> str | None:
    """deploy/monitoring of the checkout the images are built from, if there is one."""
    build = values.build()
    return None if build is None else f"{build['context']}/deploy/monitoring"


def _monitoring(values: ComposeValues, folder: str) -> dict[str, Any]:
    """Prometheus and Grafana. Neither knows the suite's key, so whatever HOST says they
    are published on loopback only."""

    def wget(port: int, path: str) -> list[str]:  # both images have busybox's, not curl
        return ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"]

    prometheus, grafana = MONITORING_PORTS["prometheus"], MONITORING_PORTS["grafana"]
    dashboard = f"{GRAFANA_DASHBOARDS}/localsuite.json"
    return {
        "prometheus": {
            "image": PROMETHEUS_IMAGE,
            "profiles": [MONITORING_PROFILE],
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
            ],
            "volumes": [
                _bind(f"{folder}/prometheus.yml", "/etc/prometheus/prometheus.yml", read_only=True)
            ],
            "ports": [f"127.0.0.1:{prometheus}:{prometheus}"],
            "healthcheck": _healthcheck(values, wget(prometheus, "/-/ready"), "10s"),
            "restart": "unless-stopped",
        },
        "grafana": {
            "image": GRAFANA_IMAGE,
            "profiles": [MONITORING_PROFILE],
            "environment": {
                # read-only dashboards for whoever reaches loopback; admin/admin to edit
                "GF_AUTH_ANONYMOUS_ENABLED": "true",
                "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": dashboard,
            },
            "volumes": [  # by target: docker-compose v1 sorts them so when it merges files
                _bind(f"{folder}/grafana/localsuite.json", dashboard, read_only=True),
                _bind(
                    f"{folder}/grafana/provisioning", "/etc/grafana/provisioning", read_only=True
                ),
            ],
            "ports": [f"127.0.0.1:{grafana}:{grafana}"],
            "healthcheck": _healthcheck(values, wget(grafana, "/api/health"), "30s"),
            "restart": "unless-stopped",
        },
    }


def _document(values: ComposeValues, cuda: set[str], variant: Variant) -> dict[str, Any]:
    env = _python_env(values, variant)  # one mapping shared by every Python service: one anchor
    services: dict[str, Any] = {}
    for name in SERVICE_ORDER:
        if name in INFERENCE_SERVICES:
            services[name] = _inference(name, values, variant, cuda=name in cuda)
            if name == "inference-chat":
                services.update(_replicas(services[name], values))
        elif name == "qdrant":
            if not variant.embedded_qdrant:
                services[name] = _qdrant(values)
        else:
            services[name] = _python(name, values, variant, env)
    if variant.monitoring and (folder := _monitoring_dir(values)) is not None:
        services |= _monitoring(values, folder)
    return {"x-python-env": env, "services": services}


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented, and the one shared mapping anchored by a real name."""

    _named = 0

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def generate_anchor(self, node: yaml.Node) -> str:
        self._named += 1
        if self._named > 1:  # a builder bug: some object was put in two places
            raise AssertionError("only the Python services' environment may be shared")
        return "python-env"


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True)


_TEMPLATE_HEADER = """\
# Local AI Suite under Docker Compose. Profiles p1, p2, p3 are the presets of
# `localsuite up`: p1 = inference-chat + api-gateway; p2 = p1 + inference-code +
# embedding + rag + qdrant; p3 = p2 + mcp-server. Profile monitoring adds Prometheus
# (127.0.0.1:9090) and Grafana with the suite's dashboard (127.0.0.1:3000), from
# deploy/monitoring: add `--profile monitoring` to the command below.
#
# Generated by `python -m localsuite.deploy.compose --template` from
# src/localsuite/deploy/compose.py and the defaults in src/localsuite/core/settings.py.
# Do not edit it by hand: tests/deploy fail when the two differ. deploy/README.md says
# how to run it, how to use a GPU (compose.gpu.yml) and how to run on Kubernetes.
#
# Run it from the repository root, where `.env` and a relative MODELS_DIR/DATA_DIR are:
#   docker compose --project-directory . -f deploy/compose.yml --profile p3 up -d --build
"""

_GPU_HEADER = """\
# GPU override for deploy/compose.yml: llama.cpp's CUDA image and every GPU for both
# backends, with CHAT_N_GPU_LAYERS/CODE_N_GPU_LAYERS layers offloaded (unset or empty:
# all of them). Needs the NVIDIA Container Toolkit on the host.
#   docker compose --project-directory . -f deploy/compose.yml -f deploy/compose.gpu.yml \\
#     --profile p3 up -d --build
#
# Generated by `python -m localsuite.deploy.compose --gpu`; do not edit it by hand.
"""


def render_compose_template() -> str:
    """`deploy/compose.yml`: the suite's Compose file, driven by `.env`."""
    return _TEMPLATE_HEADER + "\n" + _dump(_document(TemplateValues(), set(), DEFAULT))


def render_gpu_override() -> str:
    """`deploy/compose.gpu.yml`: the GPU override of `deploy/compose.yml`."""
    values = TemplateValues(gpu_layers_default=GPU_ALL_LAYERS)
    services = {
        name: {
            "image": LLAMA_CUDA_IMAGE,
            "command": llama_command(name, values),
            "deploy": _gpu_reservation(),
        }
        for name in INFERENCE_SERVICES
    }
    return _GPU_HEADER + "\n" + _dump({"services": services})


def render_compose(settings: Settings, variant: Variant = DEFAULT) -> str:
    """The Compose file for this configuration: `deploy/compose.yml` with its values set."""
    values = ConcreteValues(settings)
    cuda = {
        name
        for name, layers in zip(
            INFERENCE_SERVICES,
            (settings.chat_n_gpu_layers, settings.code_n_gpu_layers),
            strict=True,
        )
        if layers != 0
    }
    header = (
        "# Local AI Suite under Docker Compose, for one configuration (its environment and\n"
        "# .env), rendered by `localsuite compose`. Profiles p1, p2, p3 are the presets;\n"
        "# profile monitoring adds Prometheus and Grafana, when rendered from a checkout.\n"
        "# Secrets stay ${NAME} references: Compose reads them from the environment or .env.\n"
        "#   docker compose -f THIS_FILE --profile p3 up -d\n"
    )
    if variant.embedded_qdrant:
        header += (
            "# No Qdrant server: rag keeps its vectors in its embedded Qdrant, under DATA_DIR.\n"
        )
    if not variant.build:
        header += (
            "# Images are not built by Compose: build them first (deploy/local-engine.sh build).\n"
        )
    return header + "\n" + _dump(_document(values, cuda, variant))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localsuite.deploy.compose",
        description="Print the suite's Compose file (default: for the current configuration).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--template", action="store_true", help="deploy/compose.yml")
    which.add_argument("--gpu", action="store_true", help="deploy/compose.gpu.yml")
    which.add_argument(
        "--local",
        action="store_true",
        help="for this configuration, the variant of deploy/local-engine.sh: rag's embedded "
        f"Qdrant, llama-server from {LOCAL_LLAMA_IMAGE}, images built beforehand",
    )
    args = parser.parse_args(argv)
    if args.template:
        text = render_compose_template()
    elif args.gpu:
        text = render_gpu_override()
    else:
        text = render_compose(Settings(), LOCAL if args.local else DEFAULT)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
