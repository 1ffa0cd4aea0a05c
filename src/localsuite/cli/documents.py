"""Commands over the rag service: index (with a progress bar) and ask.

`index` asks rag to read the files where they are when rag may (the documents folder
and RAG_INDEX_ROOTS), so that files deleted later lose their chunks at the next index;
files anywhere else are uploaded instead, in batches under RAG_MAX_UPLOAD_BYTES.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from localsuite.cli.common import app, auth_headers, console, err, fail, load_settings
from localsuite.core.settings import Settings

FINAL = ("done", "failed", "cancelled")
COLLECTION = typer.Option("--collection", "-c", help="A collection; default RAG_COLLECTION")


class RagClient:
    def __init__(self, settings: Settings, timeout: float) -> None:
        self.url = settings.rag_service_url
        self.client = httpx.Client(
            base_url=self.url, headers=auth_headers(settings), timeout=timeout
        )

    def __enter__(self) -> RagClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise fail(
                f"rag is not answering at {self.url} ({type(exc).__name__}); "
                "`localsuite up` starts it, `localsuite status` shows it"
            ) from exc

    def ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise fail(f"rag answered {response.status_code}: {error_message(response)}")
        return response.json()


def error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index")],
    collection: Annotated[str | None, COLLECTION] = None,
    wait: bool = typer.Option(True, help="Show progress until the job is done"),
) -> None:
    """Index documents into a collection, with progress; unchanged files cost nothing."""
    settings = load_settings()
    params = {"collection": collection} if collection else {}
    resolved = [p.expanduser().resolve() for p in paths]
    for path in resolved:
        if not path.exists():
            raise fail(f"no such file or folder: {path}")
    with RagClient(settings, timeout=60) as rag:
        response = rag.call(  # the job at once: progress is shown while it runs
            "POST", "/index", params=params, json={"paths": list(map(str, resolved))},
            headers={"Prefer": "respond-async"},
        )  # fmt: skip
        if response.status_code == 403:
            console.print(f"[dim]{error_message(response)}: uploading the files instead[/dim]")
            jobs = upload(rag, resolved, params, settings.rag_max_upload_bytes)
        else:
            jobs = [rag.ok(response)["job"]]
        if not wait:
            for job in jobs:
                console.print(f"job {job['id']} accepted ({job['files_total']} files)")
            return
        finished = [follow(rag, job) for job in jobs]
    summary(finished)


def upload(rag: RagClient, paths: list[Path], params: dict[str, str], limit: int) -> list[Any]:
    from localsuite.rag.loaders import walk

    files = [f for p in paths for f in (walk(p) if p.is_dir() else [p])]
    if not files:
        raise fail("no documents to upload (text, Markdown, code, HTML, PDF)")
    jobs: list[Any] = []
    batch: list[Path] = []
    size = 0
    for file in [*files, None]:
        length = file.stat().st_size if file is not None else 0
        if batch and (file is None or size + length > limit * 0.9):
            parts = [("files", (f.name, f.read_bytes())) for f in batch]
            jobs.append(rag.ok(rag.call("POST", "/documents", params=params, files=parts))["job"])
            batch, size = [], 0
        if file is not None:
            if length > limit:
                err.print(f"[yellow]skipped {file}: larger than RAG_MAX_UPLOAD_BYTES[/yellow]")
                continue
            batch.append(file)
            size += length
    return jobs


def follow(rag: RagClient, job: dict[str, Any]) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[chunks]} chunks"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("indexing", total=job["files_total"] or None, chunks=0)
        while job["state"] not in FINAL:
            time.sleep(0.5)
            job = rag.ok(rag.call("GET", f"/jobs/{job['id']}"))
            description = (
                f"waiting for {job['waiting_for']}" if job["state"] == "waiting" else "indexing"
            )
            progress.update(
                task,
                description=description,
                total=job["files_total"] or None,
                completed=job["files_done"],
                chunks=job["chunks_added"],
            )
    return job


def summary(jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        counts = (
            f"{job['files_done']} files: {job['chunks_added']} chunks added, "
            f"{job['chunks_removed']} removed, {job['chunks_unchanged']} unchanged"
        )
        if job["state"] != "done":
            raise fail(f"index job {job['state']}: {job.get('error')} ({counts})")
        console.print(f"[green]indexed[/green] into {job['collection']!r}: {counts}")
        for failure in job.get("failures", []):
            err.print(f"[yellow]not indexed:[/yellow] {failure['error']}")


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question"),
    collection: Annotated[str | None, COLLECTION] = None,
    topk: int | None = typer.Option(None, min=1, max=100, help="Chunks to retrieve"),
) -> None:
    """Answer a question from your documents, streamed, then list its sources."""
    settings = load_settings()
    body: dict[str, Any] = {"query": question, "stream": True}
    if collection:
        body["collection"] = collection
    if topk:
        body["topk"] = topk
    context: list[dict[str, Any]] = []
    with RagClient(
        settings, timeout=settings.rag_llm_timeout + settings.rag_retrieval_timeout
    ) as rag:
        try:
            with rag.client.stream("POST", "/query", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise fail(f"rag answered {response.status_code}: {error_message(response)}")
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    event = orjson.loads(line[6:])
                    if event["type"] == "context":
                        context = event["context"]
                    elif event["type"] == "delta":
                        console.out(event["text"], end="", highlight=False)
                    elif event["type"] == "error":
                        raise fail(f"\nthe answer broke off: {event['error']['message']}")
        except httpx.HTTPError as exc:
            raise fail(f"rag is not answering at {rag.url} ({type(exc).__name__})") from exc
    console.out("")
    if context:
        console.print("\n[bold]Sources[/bold]")
        for number, item in enumerate(context, start=1):
            used = "" if item.get("used", True) else " [dim](not in the prompt)[/dim]"
            where = f"{item['source']} · chunk {item['chunk']} · score {item['score']:.3f}"
            console.print(f"  [{number}] {where}{used}", highlight=False)
