"""The health probe of the suite's containers: `python -m localsuite.deploy.probe URL`.

Exit status 0 when the URL answers 2xx, 1 otherwise, with one line saying what it got
(Docker keeps the line in `docker inspect`, Kubernetes in the pod's events). The slim
image has no curl. A Python probe can also send the API key: with `LOCALSUITE_API_KEY`
set, every path but `/health/live` needs it, `/health` included.

Only the standard library's HTTP client is used: a probe runs every few seconds, and a
quick start matters more than features.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from localsuite.core.settings import Settings

_BODY_SHOWN = 300  # characters of an error answer put in the probe's line


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str


def probe(url: str, *, api_key: str | None = None, timeout: float = 5.0) -> ProbeResult:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localsuite.deploy.probe",
        description="Exit 0 when URL answers 2xx (a container health check).",
    )
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    args = parser.parse_args(argv)
    result = probe(args.url, api_key=Settings().api_key, timeout=args.timeout)
    print(result.detail, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
