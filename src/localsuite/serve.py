"""Run one Python service of the suite in this process (uvicorn, uvloop, httptools)."""

from __future__ import annotations

import logging
import os

import uvicorn
from fastapi import FastAPI

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings

PYTHON_SERVICES = ("api-gateway",)


def build_app(service: str, settings: Settings) -> tuple[FastAPI, int]:
    if service == "api-gateway":
        from localsuite.gateway.app import create_gateway_app
        from localsuite.gateway.config import load_routing

        routing = load_routing(settings, os.environ)
        return create_gateway_app(settings, routing), settings.api_gateway_port
    raise ConfigError(
        f"unknown service {service!r}; this build serves: {', '.join(PYTHON_SERVICES)}"
    )


def serve(service: str, settings: Settings, port: int | None = None) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
