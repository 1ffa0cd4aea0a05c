"""Run one Python service of the suite in this process (uvicorn, uvloop, httptools).

This is a process's start-up: the one place that sets what a service's libraries read
from the environment when they load (`runtime_environment`), before anything imports
them; a variable the user set already wins.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import uvicorn

from localsuite.core.auth import refuse_exposure
from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings, environment

PYTHON_SERVICES = ("api-gateway", "embedding", "rag", "mcp-server")


def build_app(service: str, settings: Settings) -> tuple[Any, int]:
    """The service's ASGI app and its port; each service's modules are imported only here."""
    if service == "api-gateway":
        from localsuite.gateway.app import create_gateway_app
        from localsuite.gateway.config import load_routing

        routing = load_routing(settings, environment())
        return create_gateway_app(settings, routing), settings.api_gateway_port
    if service == "embedding":
        from localsuite.embedding.app import create_embedding_app

        return create_embedding_app(settings), settings.embedding_port
    if service == "rag":
        from localsuite.rag.app import create_rag_app

        return create_rag_app(settings), settings.rag_port
    if service == "mcp-server":
        from localsuite.mcp_server.app import create_mcp_app

        return create_mcp_app(settings), settings.mcp_port
    raise ConfigError(
        f"unknown service {service!r}; this build serves: {', '.join(PYTHON_SERVICES)}"
    )


def runtime_environment(service: str, settings: Settings) -> dict[str, str]:
    """Variables the service's libraries read once, when they load."""
    if service == "embedding" and settings.embedding_backend == "sentence-transformers":
        from localsuite.embedding.backends.sentence_transformers import RUNTIME_ENVIRONMENT

        return RUNTIME_ENVIRONMENT
    return {}


def serve(service: str, settings: Settings, port: int | None = None) -> None:
    for name, value in runtime_environment(service, settings).items():
        os.environ.setdefault(name, value)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    refuse_exposure(settings, service)
    app, default_port = build_app(service, settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=port or default_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
