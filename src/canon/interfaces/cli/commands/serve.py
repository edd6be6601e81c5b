"""``canon serve``: the model server (the model image's entrypoint, or the workspace's
model for development)."""

from __future__ import annotations

from pathlib import Path

import click

from canon.interfaces.cli.commands._common import profile_of, root_of


@click.command(
    "serve",
    help="Serve a model over HTTP: POST /predict, GET /healthz /readyz /provenance /metrics.\n\n"
    "With --image-root, serve an extracted model image (its /canon/provenance.json is "
    "verified against the files); otherwise the workspace's model artifact.",
)
@click.option(
    "--image-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="An extracted model image (the root of its filesystem).",
)
@click.option("--image-digest", default=None, help="The image's manifest digest, for /provenance.")
@click.option("--artifact", default=None, help="The model artifact (workspace mode).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--max-body", type=int, default=1 << 20, show_default=True, help="Bytes.")
@click.pass_context
def command(
    ctx: click.Context,
    image_root: Path | None,
    image_digest: str | None,
    artifact: str | None,
    host: str,
    port: int,
    max_body: int,
) -> int:
    import os

    import uvicorn

    from canon.interfaces.serve.app import create_app
    from canon.interfaces.serve.bundle import from_image_root
    from canon.interfaces.serve.model import ServedModel
    from canon.interfaces.serve.requests import Limits

    if image_root is not None:
        bundle = from_image_root(image_root.resolve(), image_digest)
    else:
        from canon.interfaces.serve.workspace import from_workspace

        bundle = from_workspace(root_of(ctx), profile_of(ctx), artifact)
    for key, value in bundle.env.items():
        os.environ.setdefault(key, value)
    app = create_app(ServedModel(bundle), Limits(max_body=max_body))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0
