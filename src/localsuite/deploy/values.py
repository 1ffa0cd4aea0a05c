"""Where the Compose builder's values come from: `.env` at run time or one configuration.

`TemplateValues` writes Compose interpolations, `${LLAMA_PARALLEL:-2}`, with the defaults
of `core/settings.py`. `ConcreteValues` writes one `Settings`' values, with absolute
paths. Secrets are interpolations in both, so that they are never written into a file.
Text is escaped for Compose (`$` is `$$`).
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from localsuite.core.settings import Settings
from localsuite.deploy.containers import BUNDLED_GGUF, model_file


def as_text(value: object) -> str:
    """A setting's value as `.env` would write it: `60`, not `60.0`; None is empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def is_secret(field: str) -> bool:
    """Whether a setting holds a secret (`SecretStr`): never written into a file."""
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


# The containers listen on 0.0.0.0: without the key no service starts (`core.auth`), so
# Compose refuses to run without it, saying where it goes.
KEY_REFERENCE = (
    "${LOCALSUITE_API_KEY:?set LOCALSUITE_API_KEY in .env (localsuite compose writes one)}"
)


class ComposeValues(Protocol):
    """Where the builder's values come from: `${NAME:-default}` or this configuration."""

    def setting(self, field: str) -> str: ...
    def publish_host(self) -> str: ...
    def model(self, field: str) -> str: ...
    def host_path(self, field: str, below: str = "") -> str: ...
    def gpu_layers(self, field: str) -> str: ...
    def build(self) -> dict[str, str] | None: ...
    def chat_replicas(self) -> int: ...


class TemplateValues:
    """`deploy/compose.yml`'s values: what `.env` says when Compose runs, else the default."""

    def __init__(self, *, gpu_layers_default: int = 0) -> None:
        self.gpu_layers_default = gpu_layers_default

    @staticmethod
    def _ref(field: str, default: str) -> str:
        return f"${{{field.upper()}:-{default}}}"

    def setting(self, field: str) -> str:
        if field == "localsuite_api_key":
            return KEY_REFERENCE
        default = "" if is_secret(field) else as_text(Settings.model_fields[field].default)
        return self._ref(field, default)

    def publish_host(self) -> str:
        return self.setting("host")

    def model(self, field: str) -> str:
        return self._ref(field, BUNDLED_GGUF)

    def host_path(self, field: str, below: str = "") -> str:
        # `./models`, not `models`: Compose takes a bare name for a named volume.
        default = f"./{Settings.model_fields[field].default}"
        return self._ref(field, default) + (f"/{below}" if below else "")

    def gpu_layers(self, field: str) -> str:
        return self._ref(field, str(self.gpu_layers_default))

    def build(self) -> dict[str, str] | None:
        return {"context": ".", "dockerfile": "deploy/Dockerfile"}

    def chat_replicas(self) -> int:
        return 1  # a file's services are fixed: `localsuite compose` writes replicas


class ConcreteValues:
    """One configuration's values, for `localsuite compose`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def setting(self, field: str) -> str:
        if is_secret(field):  # never written into a file: Compose reads it when it runs
            return TemplateValues().setting(field)
        return as_text(getattr(self.settings, field)).replace("$", "$$")

    def publish_host(self) -> str:
        host = self.settings.host
        return f"[{host}]" if ":" in host else host  # IPv6

    def model(self, field: str) -> str:
        return model_file(getattr(self.settings, field)).replace("$", "$$")

    def host_path(self, field: str, below: str = "") -> str:
        path = Path(getattr(self.settings, field))
        # Absolute and normalised, symlinks kept: what Compose makes of a relative path.
        absolute = os.path.abspath(path / below if below else path)  # noqa: PTH100
        return absolute.replace("$", "$$")

    def gpu_layers(self, field: str) -> str:
        return as_text(getattr(self.settings, field))

    def chat_replicas(self) -> int:
        return self.settings.chat_replicas

    def build(self) -> dict[str, str] | None:
        """The checkout this module runs from, if it is one (an installed wheel is not)."""
        root = Path(__file__).resolve().parents[3]
        if not (root / "deploy" / "Dockerfile").is_file():
            return None
        return {"context": str(root), "dockerfile": "deploy/Dockerfile"}
