"""``canon controller``: reconcile this clone to a Git branch, forever."""

from __future__ import annotations

import os

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of


@click.command(
    "controller",
    help="Keep this clone (owned by the controller) and its deployments at REMOTE/BRANCH: "
    "poll every --interval (with jitter) and on POST /hooks/git (GitHub-style HMAC-SHA256 "
    "with CANON_WEBHOOK_SECRET). Ready / Retry (backoff) / Stalled (needs a Git change; "
    "the same commit is tried again after --retry-stalled).",
)
@click.option("--remote", default="origin", show_default=True)
@click.option("--branch", default="main", show_default=True)
@click.option("--interval", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option(
    "--retry-stalled",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Try a stalled commit again after this long (a stage may have failed on "
    "something outside Git); 0: only a new commit is tried.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9090, show_default=True)
@click.option("--once", is_flag=True, help="Reconcile once, print the result, exit.")
@click.pass_context
def command(
    ctx: click.Context,
    remote: str,
    branch: str,
    interval: float,
    retry_stalled: float,
    host: str,
    port: int,
    once: bool,
) -> int:
    import threading

    from canon.reconcile.controller import Condition, Controller, Options
    from canon.reconcile.webhook import check_secret

    def emit(event: object) -> None:
        to_dict = getattr(event, "to_dict", None)
        if to_dict is not None and type(event).__name__ == "ReconcileFinished":
            print_json(to_dict())

    secret = b"" if once else check_secret(os.environ.get("CANON_WEBHOOK_SECRET"))
    options = Options(
        remote=remote,
        branch=branch,
        interval=interval,
        profile=profile_of(ctx),
        stalled_retry=retry_stalled,
    )
    controller = Controller(root_of(ctx), options, emit)
    if once:
        result = controller.reconcile()
        return 0 if result.condition is Condition.READY else 1
    import uvicorn

    from canon.interfaces.controller.app import create_app

    loop = threading.Thread(target=controller.run, name="canon-reconcile", daemon=True)
    loop.start()
    try:
        uvicorn.run(
            create_app(controller, secret),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
    finally:
        controller.stopping.set()
        controller.wake.set()
        loop.join(timeout=60)
    return 0
