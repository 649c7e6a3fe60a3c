"""``megen app``: serve the interactive MEG page (Generate and Explore tabs) on a local port."""

from __future__ import annotations

from pathlib import Path

import typer

from megen.cli.common import handle_errors, say


def register(app: typer.Typer) -> None:
    app.command("app")(serve_app)


@handle_errors
def serve_app(
    port: int = typer.Option(8000, "--port", help="TCP port of the page."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."
    ),
    model: str = typer.Option("tiny", "--model", help="Any model `megen generate --model` accepts."),
    db: Path | None = typer.Option(
        None, "--db", help="Results database of `megen sweep` for the Explore tab."
    ),
) -> None:
    """Serve the interactive MEG page: generate over noisy links, explore a results database."""
    from megen.app.server import serve

    serve(host, port, model, db, log=say)
