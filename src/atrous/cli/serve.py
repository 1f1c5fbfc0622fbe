"""``atrous serve``: the HTTP service and web page for one model, run with uvicorn."""

from __future__ import annotations

import typer

from atrous.cli._app import app
from atrous.cli._model import open_segmenter, path_line
from atrous.cli._options import (
    ContractOpt,
    EngineOpt,
    OutputTensorOpt,
    ThreadsOpt,
    WeightsOpt,
    with_output_tensor,
)
from atrous.cli._output import console
from atrous.errors import ConfigError


@app.command()
def serve(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    engine: EngineOpt = "auto",
    threads: ThreadsOpt = None,
    contract: ContractOpt = None,
    output_tensor: OutputTensorOpt = None,
    weights: WeightsOpt = None,
    max_bytes: int = typer.Option(None, help="largest upload in bytes, else 413 [20 MB]"),
    max_pixels: int = typer.Option(None, help="largest image in pixels, else 413 [16 M]"),
    queue: int = typer.Option(None, help="requests in flight before 503 [16]"),
    body_timeout: float = typer.Option(None, help="seconds for an upload to arrive, else 408 [30]"),
    allowed_hosts: str = typer.Option(
        None,
        help="Host names answered, comma list, '*' for any [localhost names on a loopback host]",
    ),
    replicas: int = typer.Option(
        None, help="engine replicas side by side [cores / --threads; else 1, a thread per core]"
    ),
    max_batch: int = typer.Option(
        4, help="most queued requests run as one batch (1: one at a time)"
    ),
    batch_window_ms: float = typer.Option(
        0.0, help="ms a batch waits to fill (0: takes what is queued)"
    ),
    deadline: float = typer.Option(None, help="seconds to answer a request, else 503 [none]"),
) -> None:
    """Serve MODEL over HTTP: POST /v1/segment, GET /v1/model, /healthz, /metrics, page at /.

    --threads is per replica: by default one replica with a thread per core.
    """
    contract = with_output_tensor(contract, output_tensor)
    try:
        import uvicorn

        from atrous.serve import ServeLimits, create_app
        from atrous.serve.security import allowed_hosts_for
        from atrous.serve.workers import plan_workers
    except ImportError as exc:
        raise ConfigError(
            f"serve needs the 'serve' extra ({exc.name} is missing): pip install 'atrous[serve]'"
        ) from None
    given = {
        "max_bytes": max_bytes,
        "max_pixels": max_pixels,
        "queue": queue,
        "body_timeout": body_timeout,
    }
    try:
        limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})
        plan = plan_workers(
            replicas,
            threads,
            max_batch=max_batch,
            batch_window=batch_window_ms / 1e3,
            deadline=deadline,
        )
    except ValueError as exc:
        raise ConfigError(f"serve: {exc}") from None
    hosts = allowed_hosts_for(host, allowed_hosts.split(",") if allowed_hosts else None)
    segmenter = open_segmenter(model, engine, plan.threads, contract, weights)
    application = create_app(segmenter, limits=limits, allowed_hosts=hosts, workers=plan)
    pool = application.state.service.pool.describe()
    console.print(
        f"serving {application.state.service.card.name} on http://{host}:{port}/ "
        f"({pool['replicas']} engine replicas x {pool['threads']} threads, "
        f"batches of up to {pool['max_batch']})"
    )
    console.print(path_line(segmenter), markup=False, highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
