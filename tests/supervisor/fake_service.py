"""A stand-in service for supervisor tests (stdlib only, starts fast).

It serves `/health` and `/health/live` and misbehaves on request: healthy only after a
while, exits after a while (or at once), answers 503 or stops answering its health
checks after a while, ignores SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=3)
    parser.add_argument("--unhealthy-after", type=float, default=None)
    parser.add_argument("--hang-after", type=float, default=None)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--say", default="")
    args = parser.parse_args()
    started = time.monotonic()
    if args.say:
        print(args.say, flush=True)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.exit_after is not None:
        if args.exit_after <= 0:
            raise SystemExit(args.exit_code)
        threading.Timer(args.exit_after, os._exit, [args.exit_code]).start()

    def passed(limit: float | None) -> bool:
        return limit is not None and time.monotonic() - started >= limit

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if passed(args.hang_after):
                time.sleep(3600)
            ok = time.monotonic() - started >= args.ready_after and not passed(args.unhealthy_after)
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *values: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
