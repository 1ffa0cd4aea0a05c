"""Operations asked of the supervisor: restart a service, switch a backend's model.

Each runs as an operation that holds its service (`Supervisor.run_operation`): the loop
leaves the service alone meanwhile and a second request for it gets 409.

A model switch (`switch_model`), with no failed client request:

1. refuse what cannot work, before touching anything: a service that is not a
   llama-server (400), a path instead of a model name (422), a name not in the registry
   (404, with the valid names), a switch that would leave a model alias of the gateway
   with no other backend, e.g. preset p1 with inference-chat alone (409);
2. drain the backend at the gateway: new requests go to the other backends, requests
   and streams in flight finish (waited for up to `SUPERVISOR_DRAIN_TIMEOUT`; any left
   after that are failed over by the gateway when the server stops);
3. stop the llama-server (SIGTERM, wait, SIGKILL) and start it with the new model;
4. wait until it is healthy (llama-server's `/health` turns 200 once it can generate);
   if it exits or never turns healthy, start it again with the previous model and
   answer 502 saying why (the loop takes over if even that fails);
5. undrain, whatever happened.

`restart` of a llama-server takes the same path with the same model when it can drain
(another backend serves its aliases); otherwise, and for any other service, it is a
plain stop and start. A failed service is started again from zero crashes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from localsuite.core.errors import (
    Conflict,
    InvalidRequest,
    LocalSuiteError,
    ServiceUnavailable,
    Unprocessable,
    UpstreamError,
)
from localsuite.core.stack import ProcessState
from localsuite.inference.registry import ModelEntry, ModelRegistry
from localsuite.supervisor.gateway_admin import GatewayAdmin
from localsuite.supervisor.services import ServiceSpec, inference_spec
from localsuite.supervisor.supervised import SupervisedService
from localsuite.supervisor.supervisor import Supervisor

log = logging.getLogger("localsuite.supervisor")

GATEWAY = "api-gateway"


def resolve_model(registry: ModelRegistry, name: str) -> ModelEntry:
    """A registry model by name; a path is refused (422), an unknown name is 404."""
    wanted = name.strip()
    if not wanted or any(c in wanted for c in "/\\\0") or wanted.startswith("."):
        valid = ", ".join(e.name for e in registry.models()) or "(none)"
        raise Unprocessable(
            f"{name!r} is not a model name: models are named, never given as paths "
            f"(put the file in MODELS_DIR); valid models: {valid}",
            code="invalid_model_name",
            param="model",
        )
    return registry.resolve(wanted)


def inference_service(sup: Supervisor, name: str) -> SupervisedService:
    svc = sup.service(name)
    if not svc.spec.is_inference:
        served = [s.name for s in sup.services.values() if s.spec.is_inference]
        raise InvalidRequest(
            f"{name} serves no model; the services with a model are: {', '.join(served)}",
            code="not_an_inference_service",
        )
    return svc


def gateway_admin(sup: Supervisor) -> GatewayAdmin:
    gateway = sup.services.get(GATEWAY)
    if gateway is None or gateway.state is not ProcessState.READY:
        state = "not in this stack" if gateway is None else gateway.state.value
        raise ServiceUnavailable(
            f"the api-gateway is {state}: the backend cannot be drained, so the switch "
            "would fail requests; try again once `localsuite status` shows it ready",
            code="gateway_unavailable",
        )
    return GatewayAdmin(
        sup.session, sup.settings.gateway_service_url, sup.headers,
        timeout=sup.settings.supervisor_admin_timeout, clock=sup.clock,
    )  # fmt: skip


@asynccontextmanager
async def drained(
    sup: Supervisor, svc: SupervisedService, *, required: bool
) -> AsyncIterator[bool]:
    """Drain `svc`'s backend at the gateway for the duration; yields whether it did.

    When it cannot (no gateway, the only backend of an alias): refuses if `required`,
    else yields False and the caller goes on without a drain."""
    if svc.state is not ProcessState.READY:
        yield False  # not serving: nothing to drain
        return
    try:
        admin = gateway_admin(sup)
        backend = await admin.backend_for(svc.name, svc.spec.port)
        alone = [] if backend is None else await admin.aliases_left_without(backend)
    except ServiceUnavailable:
        if required:
            raise
        backend, alone = None, []
    if alone:
        if required:
            running = ", ".join(s for s in sup.services if s.startswith("inference-"))
            raise Conflict(
                f"switching {svc.name} would leave {', '.join(alone)} with no backend: no other "
                f"backend serves {'it' if len(alone) == 1 else 'them'} now (preset {sup.preset} "
                f"runs {running}); start a preset with both inference services (p2 or p3), or "
                "use restart instead",
                code="no_other_backend",
            )
        backend = None
    if backend is None:
        yield False
        return
    await admin.drain(backend)
    try:
        left = await admin.wait_idle(backend, sup.settings.supervisor_drain_timeout)
        if left:
            log.warning("%s: %d requests still in flight after the drain timeout; the gateway "
                        "fails them over", svc.name, left)  # fmt: skip
        yield True
    finally:
        try:
            await admin.undrain(backend)
        except LocalSuiteError as exc:  # a gateway restarted meanwhile starts undrained anyway
            log.warning("%s: undrain failed: %s", svc.name, exc)


async def switch_model(sup: Supervisor, name: str, model: str) -> dict[str, Any]:
    """Switch one process, or every replica of a service one after the other (each drained
    while the others serve, so that the switch fails no request)."""
    replicas = [s for s in sup.services.values() if s.spec.group == name and s.name != name]
    svc = inference_service(sup, name)
    entry = resolve_model(sup.models, model)
    result = await sup.run_operation(svc, f"switching to {entry.name}", _switch(sup, svc, entry))
    if replicas:
        result["replicas"] = [result.copy()]
        for replica in replicas:
            done = await sup.run_operation(replica, f"switching to {entry.name}",
                                           _switch(sup, replica, entry))  # fmt: skip
            result["replicas"].append(done)
    return result


async def _switch(sup: Supervisor, svc: SupervisedService, entry: ModelEntry) -> dict[str, Any]:
    started = sup.clock()
    previous = svc.spec
    was = svc.state
    if entry.name == previous.model and was is ProcessState.READY:
        return _switch_result(svc, previous, started, sup.clock(), drained=False)
    target = inference_spec(svc.spec.group, sup.settings, sup.models, model=entry.name)
    try:
        async with drained(sup, svc, required=True) as did_drain:
            failure = await svc.cycle(target, "model_switch")
            if failure is None:
                sup.metrics.switched(svc.name, "ok")
                log.info("%s: now serving %s", svc.name, entry.name)
                return _switch_result(svc, previous, started, sup.clock(), drained=did_drain)
            log.warning("%s: %s failed (%s); rolling back to %s", svc.name, entry.name,
                        failure.reason, previous.model)  # fmt: skip
            sup.metrics.switched(svc.name, "rolled_back")
            back = await _roll_back(sup, svc, previous, was, entry.name)
    except Conflict:
        sup.metrics.switched(svc.name, "refused")
        raise
    raise UpstreamError(
        f"{svc.name} could not serve {entry.name}: {failure.reason}. {back}"
        + (f"\nIts last log lines:\n{failure.log_tail}" if failure.log_tail else ""),
        code="model_switch_failed",
    )


async def _roll_back(
    sup: Supervisor, svc: SupervisedService, previous: ServiceSpec, was: ProcessState, tried: str
) -> str:
    """Put the previous model back; returns a sentence for the error message."""
    if was is not ProcessState.READY:  # it was not serving before either: as it was
        svc.use_spec(previous)
        if was is ProcessState.FAILED:
            svc.fail(f"still failed: the switch to {tried} did not help")
            return f"{svc.name} is back on {previous.model}, still failed."
        svc.crashed("a switch failed", sup.clock())
        return f"{svc.name} is back on {previous.model}; the supervisor restarts it with backoff."
    failure = await svc.cycle(previous, "model_switch")
    if failure is None:
        return f"Rolled back: {svc.name} serves {previous.model} again."
    svc.crashed(failure.reason, sup.clock())
    return (
        f"Rolling back to {previous.model} failed too ({failure.reason}); the supervisor keeps "
        "restarting it with backoff."
    )


def _switch_result(
    svc: SupervisedService, previous: ServiceSpec, started: float, now: float, *, drained: bool
) -> dict[str, Any]:
    return {
        "service": svc.name,
        "model": svc.spec.model,
        "previous_model": previous.model,
        "changed": svc.spec.model != previous.model,
        "seconds": round(now - started, 3),
        "drained": drained,
        "state": svc.state.value,
        "pid": svc.process.pid,
    }


async def restart(sup: Supervisor, name: str) -> dict[str, Any]:
    svc = sup.service(name)
    return await sup.run_operation(svc, "restarting", _restart(sup, svc))


async def _restart(sup: Supervisor, svc: SupervisedService) -> dict[str, Any]:
    started = sup.clock()
    svc.forgive()
    async with drained(sup, svc, required=False) as did_drain:
        failure = await svc.cycle(svc.spec, "requested")
    if failure is not None:
        svc.crashed(failure.reason, sup.clock())
        raise UpstreamError(
            f"{svc.name} was restarted but {failure.with_log()}\nThe supervisor keeps trying "
            "with backoff.",
            code="restart_failed",
        )
    return {
        "service": svc.name,
        "state": svc.state.value,
        "pid": svc.process.pid,
        "restarts": svc.restarts,
        "seconds": round(sup.clock() - started, 3),
        "drained": did_drain,
    }


def models(sup: Supervisor) -> dict[str, Any]:
    """The registry, and what each inference service serves now."""
    return {
        "models": [
            {"name": e.name, "source": e.source, "size_bytes": e.size_bytes}
            for e in sup.models.models()
        ],
        "services": {
            name: {"model": svc.spec.model, "state": svc.state.value, "operation": svc.operation}
            for name, svc in sup.services.items()
            if svc.spec.is_inference
        },
    }
