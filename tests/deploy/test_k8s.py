"""deploy/k8s: valid YAML whose objects fit together (selectors, ports, volumes, config),
with probes and resources everywhere, the gateway's routing file read by the gateway's
own parser, and llama-server's flags those of Compose. There is no cluster and no
offline schema here; `kubectl kustomize deploy/k8s` was run by hand (deploy/README.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from localsuite import __version__
from localsuite.core.settings import Settings
from localsuite.deploy.compose import render_compose
from localsuite.deploy.containers import (
    LLAMA_IMAGE,
    PYTHON_SERVICES,
    QDRANT_IMAGE,
    SUITE_IMAGE,
    container_port,
    container_settings,
)
from localsuite.gateway.config import parse_litellm_config
from localsuite.supervisor.services import PRESETS

from .conftest import DEPLOY

K8S = DEPLOY / "k8s"
KNOWN_KINDS = {
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("policy/v1", "PodDisruptionBudget"),
}
SERVICES = {*PRESETS["p3"], "qdrant"}

Obj = dict[str, Any]


def manifests() -> list[Obj]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
            objects.append(doc)
    return objects


def of_kind(kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in manifests() if o["kind"] == kind}


def workloads() -> dict[str, Obj]:
    return of_kind("Deployment") | of_kind("StatefulSet")


def containers(workload: Obj, *, init: bool = True) -> Iterator[Obj]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec["containers"]
    if init:
        yield from spec.get("initContainers", [])


def env_config() -> dict[str, str]:
    data = of_kind("ConfigMap")["localsuite-env"]["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    return dict(data)


def settings_from(config: dict[str, str]) -> Settings:
    """The ConfigMap as settings, and nothing else (no environment, no `.env`)."""
    return Settings.model_validate({k.lower(): v for k, v in config.items()})


def probe_path(probe: Obj) -> str:
    if "httpGet" in probe:
        return str(probe["httpGet"]["path"])
    command = probe["exec"]["command"]
    assert command[:3] == ["python", "-m", "localsuite.deploy.probe"], command
    return str(urlsplit(command[3]).path)


def probe_port(probe: Obj, container: Obj) -> int:
    if "httpGet" in probe:
        port = probe["httpGet"]["port"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        return int(named[port]) if isinstance(port, str) else int(port)
    return int(urlsplit(probe["exec"]["command"][3]).port or 0)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["images"] == [
        {"name": "localsuite", "newName": "localsuite", "newTag": __version__}
    ]


def test_every_object_is_a_known_kind_with_a_unique_name() -> None:
    seen = set()
    for obj in manifests():
        assert (obj["apiVersion"], obj["kind"]) in KNOWN_KINDS, obj.get("kind")
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, key
        seen.add(key)
        assert "namespace" not in obj["metadata"]  # the kustomization sets it


def test_every_spec_service_has_a_workload_and_a_service_on_its_port() -> None:
    services = of_kind("Service")
    assert set(workloads()) == SERVICES
    for name in SERVICES:
        service = services[name]
        assert service["spec"]["ports"][0]["port"] == container_port(name)
        labels = workloads()[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_workloads_have_probes_resources_and_what_they_mount(name: str) -> None:
    workload = workloads()[name]
    template = workload["spec"]["template"]
    assert (
        workload["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
    for container in containers(workload):
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), container["name"]
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes or mount["name"] in claims, mount
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in of_kind("PersistentVolumeClaim")
        if "configMap" in volume:
            assert volume["configMap"]["name"] in of_kind("ConfigMap")
    for container in containers(workload, init=False):
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for probe in ("readinessProbe", "livenessProbe"):
            port = probe_port(container[probe], container)
            assert port in {p["containerPort"] for p in container["ports"]}, probe
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_gateway_scales_out_ready_on_health_and_alive_on_live() -> None:
    gateway = workloads()["api-gateway"]
    assert gateway["kind"] == "Deployment" and gateway["spec"]["replicas"] >= 2
    container = next(containers(gateway))
    assert probe_path(container["readinessProbe"]) == "/health"
    assert probe_path(container["livenessProbe"]) == "/health/live"
    budget = of_kind("PodDisruptionBudget")["api-gateway"]
    assert budget["spec"]["selector"] == gateway["spec"]["selector"]


@pytest.mark.parametrize("name", sorted(PYTHON_SERVICES))
def test_python_services_run_the_suite_image_with_settings_it_knows(name: str) -> None:
    container = next(containers(workloads()[name]))
    assert container["image"] == SUITE_IMAGE
    assert container["args"] == ["serve", name]
    assert probe_path(container["readinessProbe"]) == "/health"
    assert probe_path(container["livenessProbe"]) == "/health/live"
    assert probe_port(container["readinessProbe"], container) == container_port(name)
    assert [s["configMapRef"]["name"] for s in container["envFrom"]] == ["localsuite-env"]
    names = {e["name"] for e in container.get("env", [])} | set(env_config())
    unknown = {n for n in names if n.lower() not in Settings.model_fields}
    assert not unknown, f"not settings of the suite: {unknown}"


def test_the_config_is_valid_settings_and_places_services_as_compose_does() -> None:
    settings = settings_from(env_config())
    assert settings.host == "0.0.0.0"
    for name in ("api-gateway", "embedding", "rag", "qdrant"):
        url = {
            "api-gateway": settings.gateway_service_url,
            "embedding": settings.embedding_service_url,
            "rag": settings.rag_service_url,
            "qdrant": settings.qdrant_url,
        }[name]
        assert urlsplit(url).netloc == f"{name}:{container_port(name)}"
    fixed = container_settings()
    assert {k: v for k, v in env_config().items() if k in fixed} == {
        k: v for k, v in fixed.items() if k in env_config()
    }


def test_the_routing_file_loads_in_the_gateway() -> None:
    text = of_kind("ConfigMap")["gateway-routing"]["data"]["gateway.yaml"]
    routing = parse_litellm_config(
        yaml.safe_load(text),
        Settings(_env_file=None),
        {},
        source="gateway-routing",
    )
    assert not routing.ignored_keys
    assert [r.deployment for r in routing.routes["chat-7b"]] == ["inference-chat", "inference-code"]
    assert [r.deployment for r in routing.routes["code-7b"]] == ["inference-code", "inference-chat"]
    assert routing.resolve("chat") == "chat-7b" and routing.resolve("code") == "code-7b"
    for name, backend in routing.servers.items():
        assert urlsplit(backend.api_base).netloc == f"{name}:{container_port(name)}"
    mount = next(containers(workloads()["api-gateway"]))
    env = {e["name"]: e.get("value") for e in mount["env"]}
    assert env["GATEWAY_CONFIG"] == "/etc/localsuite/gateway.yaml"


@pytest.mark.parametrize("name", ["inference-chat", "inference-code"])
def test_llama_server_gets_the_flags_of_compose(name: str) -> None:
    """$(NAME) expanded from the ConfigMap as the kubelet does, against Compose's flags."""
    workload = workloads()[name]
    server = next(containers(workload, init=False))
    assert server["image"] == LLAMA_IMAGE
    config = env_config()
    args = [re.sub(r"\$\((\w+)\)", lambda m: config[m.group(1)], a) for a in server["args"]]
    settings = settings_from(config)
    compose = yaml.safe_load(render_compose(settings))["services"][name]["command"]
    assert args == compose
    init = workload["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == SUITE_IMAGE
    assert init["command"] == ["python", "-m", "localsuite.deploy.models", "/models"]


def test_qdrant_is_a_stateful_set_with_its_own_volume() -> None:
    qdrant = workloads()["qdrant"]
    assert qdrant["kind"] == "StatefulSet"
    assert qdrant["spec"]["serviceName"] in of_kind("Service")
    container = next(containers(qdrant))
    assert container["image"].startswith(QDRANT_IMAGE)  # the same version as Compose
    assert probe_path(container["readinessProbe"]) == "/readyz"
    assert probe_path(container["livenessProbe"]) == "/livez"
    assert container["volumeMounts"][0]["mountPath"] == "/qdrant/storage"


@pytest.mark.parametrize("name", ["inference-chat", "inference-code", "api-gateway",
                                  "embedding", "rag", "mcp-server"])  # fmt: skip
def test_every_service_takes_the_key_from_a_secret_it_cannot_start_without(name: str) -> None:
    (container,) = containers(workloads()[name], init=False)
    wanted = "LLAMA_API_KEY" if name.startswith("inference-") else "LOCALSUITE_API_KEY"
    (entry,) = [e for e in container.get("env", []) if e["name"] == wanted]
    ref = entry["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "localsuite-api-key" and ref["key"] == "key"
    assert not ref.get("optional", False)  # no key, no pod: they listen on 0.0.0.0
