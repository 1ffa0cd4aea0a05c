"""A plain load balancer, the comparator a user would put in front of replicas:
round-robin, or least outstanding requests, streaming answers through, no affinity.

    python bench/balancer_proxy.py rr|least PORT BACKEND[,BACKEND...]
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

import aiohttp
import uvicorn


def make_app(mode: str, backends: list[str]) -> Any:
    state: dict[str, Any] = {"outstanding": dict.fromkeys(backends, 0)}
    turn = itertools.cycle(backends)

    def choose() -> str:
        if mode == "rr":
            return next(turn)
        outstanding = state["outstanding"]
        return min(backends, key=lambda b: outstanding[b])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["session"] = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(force_close=True)
                    )
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await state["session"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        backend = choose()
        state["outstanding"][backend] += 1
        try:
            async with state["session"].post(
                backend + scope["path"], data=body, headers={"Content-Type": "application/json"}
            ) as response:
                headers = [(b"content-type", response.headers["Content-Type"].encode()),
                           (b"x-localsuite-backend", backend.encode())]  # fmt: skip
                await send({"type": "http.response.start", "status": response.status,
                            "headers": headers})  # fmt: skip
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        finally:
            state["outstanding"][backend] -= 1

    return app


if __name__ == "__main__":
    mode, port, backends = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    uvicorn.run(make_app(mode, backends), host="127.0.0.1", port=port, log_level="warning",
                loop="uvloop", http="httptools", access_log=False)  # fmt: skip
