"""The smallest forwarding proxy, with a choice of upstream HTTP client: what does the
client alone cost? Run as `python bench/forward_proxy.py aiohttp|httpx PORT BACKEND`."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn


def make_app(client: str, backend: str) -> Any:
    state: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if client == "aiohttp":
                        import aiohttp

                        state["session"] = aiohttp.ClientSession()
                    else:
                        import httpx

                        state["session"] = httpx.AsyncClient(timeout=30)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await (
                        state["session"].close()
                        if client == "aiohttp"
                        else state["session"].aclose()
                    )
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = backend + scope["path"]
        headers = {"Content-Type": "application/json"}
        session = state["session"]
        if scope["method"] == "GET":
            status, data = 200, b"{}"
        elif client == "aiohttp":
            async with session.post(url, data=body, headers=headers) as response:
                status, data = response.status, await response.read()
        else:
            response = await session.post(url, content=body, headers=headers)
            status, data = response.status_code, response.content
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": data})

    return app


if __name__ == "__main__":
    kind, port, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvicorn.run(make_app(kind, backend), host="127.0.0.1", port=port, log_level="warning",
                loop="uvloop", http="httptools", access_log=False)  # fmt: skip
