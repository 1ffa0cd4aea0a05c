"""OpenTelemetry traces, optional: off (and free) unless the standard `OTEL_*` settings ask.

    tracing = Tracing.from_settings(settings, "api-gateway")   # off when not asked
    span = tracing.start("gateway chat", tracing.extract(headers), {"localsuite.alias": a})
    attempt = span.child("gateway.attempt", {"localsuite.deployment": d})
    headers.update(attempt.headers())        # W3C traceparent for the backend
    attempt.end("ok")

    with tracing.active("rag.query"):        # the current span, for code that awaits
        with tracing.active("rag.embedding"):  # in one task (rag)
            ... headers.update(tracing.headers()) ...

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
is set, or `OTEL_TRACES_EXPORTER` names `otlp` or `console`; `OTEL_SDK_DISABLED=true`
turns it off. Spans go to the OTLP/HTTP exporter in batches. The packages are the
`tracing` extra: asked for without them, a service logs one warning and runs untraced.
A process that embeds a service (a test harness, an app that mounts it) and has set
OpenTelemetry's global tracer provider itself gets the service's spans there, unless the
settings ask for something else.

When off, every call returns the one `NULL_SPAN`, whose methods do nothing: the hot path
pays a method call, not an import or an allocation. Each service builds its own provider
(tests build many apps in one process); none is installed as OpenTelemetry's global.
`Tracing.to(exporter)` is the test switch: spans go synchronously to the given exporter.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import TracerProvider as ApiTracerProvider

    from localsuite.core.settings import Settings

log = logging.getLogger("localsuite.tracing")

Attribute = str | int | float | bool
Attributes = Mapping[str, Attribute]
_NO_HEADERS: Mapping[str, str] = {}


class Span:
    """A started span, ended once with its outcome. The base class is the null span."""

    __slots__ = ()
    recording = False  # worth building attributes for

    def set(self, key: str, value: Attribute) -> None:
        """Set an attribute (e.g. what is only known later, such as a continuation)."""

    def child(self, name: str, attributes: Attributes | None = None) -> Span:
        """A span under this one."""
        return self

    def headers(self) -> Mapping[str, str]:
        """The W3C `traceparent` (and `tracestate`) for a call made on behalf of this span."""
        return _NO_HEADERS

    def end(self, outcome: str | None = None, *, error: str | None = None) -> None:
        """End the span; `outcome` becomes the `localsuite.outcome` attribute, `error`
        marks it failed with that description."""


NULL_SPAN = Span()


class _Live(Span):
    __slots__ = ("_span", "_tracing")
    recording = True

    def __init__(self, tracing: Tracing, span: OtelSpan) -> None:
        self._tracing = tracing
        self._span = span

    def set(self, key: str, value: Attribute) -> None:
        self._span.set_attribute(key, value)

    def child(self, name: str, attributes: Attributes | None = None) -> Span:
        from opentelemetry import trace

        return self._tracing.start(name, trace.set_span_in_context(self._span), attributes)

    def headers(self) -> Mapping[str, str]:
        from opentelemetry import trace

        return _inject(trace.set_span_in_context(self._span))

    def end(self, outcome: str | None = None, *, error: str | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if outcome is not None:
            self._span.set_attribute("localsuite.outcome", outcome)
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()


def _inject(context: Context | None) -> dict[str, str]:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)
    return carrier


class Tracing:
    """One service's tracer; `Tracing()` is off."""

    def __init__(
        self,
        provider: TracerProvider | ApiTracerProvider | None = None,
        service: str = "",
        *,
        owned: bool = True,
    ) -> None:
        self._provider = provider
        self._owned = owned  # ours to shut down (not a host process's global provider)
        self._tracer = provider.get_tracer("localsuite") if provider is not None else None
        self.service = service

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    # --- building ----------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> Tracing:
        endpoint = _traces_endpoint(settings)
        exporter_name = settings.otel_traces_exporter.strip().lower()
        if settings.otel_sdk_disabled or exporter_name == "none":
            return cls()
        if not endpoint and exporter_name not in ("otlp", "console"):
            return cls.from_host(service)
        try:
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

            if exporter_name == "console":
                exporter: SpanExporter = ConsoleSpanExporter()
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                exporter = OTLPSpanExporter(endpoint=endpoint or None)
        except ImportError:
            log.warning("OpenTelemetry tracing was asked for (OTEL_* settings) but its "
                        "packages are missing: pip install 'localsuite[tracing]'; "
                        "running without traces")  # fmt: skip
            return cls()
        name = settings.otel_service_name or service
        log.info("tracing on: %s spans to %s", name, endpoint or exporter_name)
        return cls(_provider(name, BatchSpanProcessor(exporter)), service)

    @classmethod
    def from_host(cls, service: str) -> Tracing:
        """The global provider of a process that embeds the service (a test harness, an
        app that mounts it) and installed one itself; else off. Nothing is imported to
        find out: a process that never imported OpenTelemetry has none."""
        if "opentelemetry.trace" not in sys.modules:
            return cls()
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return cls()
        return cls(provider, service, owned=False)

    @classmethod
    def to(cls, exporter: SpanExporter, service: str = "test") -> Tracing:
        """Spans go to `exporter` as each ends (tests: an in-memory exporter)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        return cls(_provider(service, SimpleSpanProcessor(exporter)), service)

    def shutdown(self) -> None:
        """Flush what is batched; the service is stopping."""
        if self._provider is not None and self._owned:
            shutdown = getattr(self._provider, "shutdown", None)
            if shutdown is not None:
                shutdown()

    # --- spans -------------------------------------------------------------------------
    def extract(self, headers: Mapping[str, str]) -> Context | None:
        """The caller's trace context from its `traceparent`, if it sent one."""
        if self._tracer is None or "traceparent" not in headers:
            return None
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        return TraceContextTextMapPropagator().extract(dict(headers))

    def start(
        self, name: str, parent: Context | None = None, attributes: Attributes | None = None
    ) -> Span:
        """A span under `parent` (or under the current span when none is given)."""
        if self._tracer is None:
            return NULL_SPAN
        return _Live(self, self._tracer.start_span(name, context=parent, attributes=attributes))

    @contextmanager
    def active(
        self, name: str, parent: Context | None = None, attributes: Attributes | None = None
    ) -> Iterator[Span]:
        """A span that is the current one inside the block (under `parent`, else under the
        current span); an exception marks it failed. Not across an async generator's
        yields: a generator may resume in another task, whose context is not this one."""
        if self._tracer is None:
            yield NULL_SPAN
            return
        from opentelemetry import trace

        span = self._tracer.start_span(name, context=parent, attributes=attributes)
        live = _Live(self, span)
        with trace.use_span(span, end_on_exit=False, record_exception=False,
                            set_status_on_exception=False):  # fmt: skip
            try:
                yield live
            except BaseException as exc:
                live.end("failed", error=f"{type(exc).__name__}: {exc}")
                raise
        live.end()

    def headers(self) -> Mapping[str, str]:
        """`traceparent` for a call made under the current span (`active`)."""
        if self._tracer is None:
            return _NO_HEADERS
        return _inject(None)


def _provider(service: str, processor: Any) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    return provider


def _traces_endpoint(settings: Settings) -> str:
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    base = settings.otel_exporter_otlp_endpoint.rstrip("/")
    return f"{base}/v1/traces" if base else ""


OFF = Tracing()
