"""The health probe of the suite's containers: `python -m localsuite.deploy.probe URL`.

Exit status 0 when the URL answers 2xx, 1 otherwise, with one line saying what it got
(Docker keeps the line in `docker inspect`, Kubernetes in the pod's events). The slim
image has no curl. A Python probe can also send the API key: with `LOCALSUITE_API_KEY`
set, every path but `/health/live` needs it, `/health` included.

Only the standard library's HTTP client is used: a probe runs every few seconds, and a
quick start matters more than features. The program's arguments and its line are the
CLI's (`cli/programs.py`); this module only probes.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass

DEFAULT_TIMEOUT = 5.0  # seconds
_BODY_SHOWN = 300  # characters of an error answer put in the probe's line


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str


def probe(url: str, *, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """GET `url`; healthy on 2xx. Never raises for a network failure: that is the answer."""
    request = urllib.request.Request(url, method="GET")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return ProbeResult(True, f"{answer.status} from {url}")
    except urllib.error.HTTPError as exc:
        body = exc.read(_BODY_SHOWN).decode("utf-8", "replace").strip()
        hint = " (set LOCALSUITE_API_KEY for the probe)" if exc.code == 401 else ""
        return ProbeResult(False, f"{exc.code} from {url}{hint}: {body}")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return ProbeResult(False, f"no answer from {url}: {reason}")


if __name__ == "__main__":  # the program's dependency on the CLI, not this module's
    from localsuite.cli.programs import probe_main

    raise SystemExit(probe_main())
