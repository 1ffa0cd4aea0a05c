"""Commands that talk to the models: chat (through the gateway)."""

from __future__ import annotations

import httpx
import orjson
import typer

from localsuite.cli.common import app, auth_headers, console, err, load_settings


@app.command()
def chat(model: str = typer.Option("chat", help="A gateway model alias")) -> None:
    """Interactive streaming chat through the gateway (empty line or Ctrl-D to quit)."""
    settings = load_settings()
    headers = auth_headers(settings)
    url = f"{settings.gateway_service_url}/v1/chat/completions"
    history: list[dict[str, str]] = []
    with httpx.Client(timeout=settings.llm_request_timeout, headers=headers) as client:
        while True:
            try:
                prompt = console.input("[bold]you>[/bold] ")
            except (EOFError, KeyboardInterrupt):
                break
            if not prompt.strip():
                break
            history.append({"role": "user", "content": prompt})
            answer = _stream_answer(client, url, model, history)
            if answer is not None:
                history.append({"role": "assistant", "content": answer})


def _stream_answer(
    client: httpx.Client, url: str, model: str, history: list[dict[str, str]]
) -> str | None:
    body = {"model": model, "messages": history, "stream": True}
    text = ""
    try:
        with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                message = orjson.loads(response.read()).get("error", {}).get("message")
                err.print(f"[red]{response.status_code}:[/red] {message}")
                return None
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = orjson.loads(line[6:])
                if "error" in chunk:
                    err.print(f"\n[red]stream failed:[/red] {chunk['error'].get('message')}")
                    return None
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    text += piece
                    console.out(piece, end="", highlight=False)
    except httpx.HTTPError as exc:
        err.print(f"[red]gateway unreachable at {url}:[/red] {exc}")
        return None
    console.out("")
    return text
