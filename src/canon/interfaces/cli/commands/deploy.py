"""``canon deploy``: roll the declared deployments out, show them, stop them."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of

NOTHING_DECLARED = (
    "No deployments declared (add one under deployments: in canon.yaml, e.g. "
    "prod: {target: local, artifact: model, port: 8080}; see the README's "
    "Serving and deploying section)."
)


@click.command(
    "deploy",
    help="Roll deployments out to the image canon.lock pins (zero-downtime on the local "
    "and podman targets; a version that never gets ready is rolled back; kubernetes: "
    "manifests rendered into deploy/), or show/stop them.\n\n"
    "ENVS are deployment names (default: all).",
)
@click.argument("envs", nargs=-1)
@click.option("--status", "show", is_flag=True, help="Show declared vs live, and drift.")
@click.option(
    "--stop", "stop_", is_flag=True, help="Stop the deployments' processes or containers."
)
@click.option(
    "--kubectl",
    is_flag=True,
    help="kubernetes targets: also `kubectl apply --server-side` the rendered manifests.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def command(
    ctx: click.Context,
    envs: tuple[str, ...],
    show: bool,
    stop_: bool,
    kubectl: bool,
    as_json: bool,
) -> int:
    from canon.apply.deployments import observe_all, roll_out, stop
    from canon.declare.memo import load_project_memoised

    root, profile = root_of(ctx), profile_of(ctx)
    if not envs and not load_project_memoised(root, profile=profile).deployments:
        # nothing to roll out, show or stop is not an error; saying nothing would be
        if as_json and show:
            print_json([])
        elif not as_json:
            click.echo(NOTHING_DECLARED)
        return 0
    if stop_:
        stop(root, profile=profile, names=envs)
        return 0
    if show:
        rows = observe_all(root, profile=profile, names=envs)
        if as_json:
            print_json(
                [
                    {
                        "environment": s.name,
                        "declared": d,
                        "live": live.digest,
                        "ready": live.ready,
                        "replicas": live.replicas,
                        "drift": list(live.drift),
                        "last_rollout": live.last_rollout,
                    }
                    for s, d, live in rows
                ]
            )
        for spec, declared, live in rows:
            state = "in sync" if live.healthy and live.digest == declared else "OUT OF SYNC"
            click.echo(f"{spec.name}  {spec.target.value} {spec.host}:{spec.port}  {state}")
            click.echo(f"  declared {declared or '(no image in canon.lock)'}")
            click.echo(
                f"  live     {live.digest or '(nothing)'}  ready {live.ready}/{live.replicas}"
            )
            for reason in live.drift:
                click.echo(f"  drift    {reason}")
            if live.last_rollout:
                click.echo(f"  last     {live.last_rollout}")
        return 0 if all(lv.healthy and lv.digest == d for _, d, lv in rows) else 1

    def emit(event: object) -> None:
        if as_json:
            print_json(event.to_dict())  # type: ignore[attr-defined]
        else:
            click.echo(getattr(event, "message", str(event)))

    from canon.apply.deployments import repo_locked

    with repo_locked(root, ["canon", "deploy", *envs]):
        results = roll_out(root, profile=profile, names=envs, emit=emit, kubectl=kubectl)
    for r in results:
        click.echo(
            f"{r.outcome:<12} {r.environment} {r.digest[:19]}…  {r.reason} ({r.duration:.1f}s)"
        )
    return 0 if all(r.ok for r in results) else 1
