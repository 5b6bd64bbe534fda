"""Commands of delivery: the image pin of each k8s overlay as git changes, the rendered diff,
offline validation, and the push-model rollout (apply, watch)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.core.cli import new_app
from pipelines.deploy import pins, rollout
from pipelines.deploy.policy import KUBERNETES_VERSION
from pipelines.runtime.errors import PipelineError

deploy_app = new_app("Kubernetes overlays: image pins, rendered diffs, validation.")
rollout_app = new_app("Push-model deploy: apply the changed overlays, watch, revert.")
TagOpt = Annotated[str | None, typer.Option("--tag", help="Image tag (the Bento version).")]
DigestOpt = Annotated[str | None, typer.Option("--digest", help="Image digest, sha256:...")]
CommitOpt = Annotated[bool, typer.Option("--commit", help="Commit the change (only that file).")]
EnvsOpt = Annotated[list[str] | None, typer.Option(
    "--env", help="Overlay(s); default: every overlay (unchanged ones apply as no-ops).")]


@deploy_app.command("validate")
def deploy_validate() -> None:
    """Render every overlay (and the shadow/flagger/review variants) and the platform, and check
    schemas (built-in kinds and CRDs), routes, the platform's RBAC and policy."""
    findings = pins.validate_repository()
    for finding in findings:
        print(f"error: {finding}", file=sys.stderr)
    if findings:
        raise PipelineError(f"{len(findings)} problem(s) in k8s/")
    print(f"k8s: every overlay and k8s/platform render, pass kubernetes-validate --strict "
          f"(Kubernetes {KUBERNETES_VERSION}), the CRD schemas (k8s/platform, k8s/crds), the "
          "platform and route checks and the delivery policy")


@deploy_app.command("simulate-shift")
def deploy_simulate_shift(
        trials: Annotated[int, typer.Option(help="Rollouts simulated per figure.")] = 4000,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 21,
        env: Annotated[str, typer.Option(help="Overlay whose analysis is simulated.")]
        = "production") -> None:
    """Abort rates of the label-share check for healthy and 10-point-shifted canaries at 40,
    100 and 200 requests/min (the rendered check with and without its final hold, and main's
    former one)."""
    from pipelines.deploy.kustomize import parse, render
    from pipelines.deploy.shift_simulation import report

    rows = report(parse(render(pins.overlay_dir(env))), trials=trials, seed=seed)
    print("| check | requests/min | minutes to 100 % | healthy canaries aborted | "
          "10-point shift aborted |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['check']} | {r['requests_per_min']} | {r['canary_min']} | "
              f"{r['healthy_abort_rate']:.2%} | {r['shifted_abort_rate']:.1%} |")


@deploy_app.command("pin")
def deploy_pin(env: str) -> None:
    """Print the image an environment is pinned to."""
    print(pins.read_pin(env).reference)


@deploy_app.command("set-image")
def deploy_set_image(env: str, tag: TagOpt = None, digest: DigestOpt = None) -> None:
    """Change the one image pin of an overlay (edits the file, commits nothing)."""
    before, after = pins.set_image(env, tag, digest)
    print(f"{env}: {before.reference} -> {after.reference}")


@deploy_app.command("diff")
def deploy_diff(env: str, against: Annotated[str, typer.Option(help="Git ref to compare with.")]
                = "HEAD", out: Annotated[Path | None, typer.Option(help="Write here.")] = None
                ) -> None:
    """Markdown of the pin change and the rendered-manifest diff (the promotion PR body)."""
    text = pins.diff_markdown(env, against)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"diff of {env} against {against} written to {out}")
    else:
        print(text, end="")


def _pin_change(env: str, action: str, tag, digest, commit: bool,
                new_name: str | None = None) -> None:
    change = pins.change_pin(env, action, tag, digest, commit, new_name=new_name)
    print(change.message.rstrip())
    print(f"committed {change.commit}" if change.commit
          else f"k8s/overlays/{env}/kustomization.yaml changed (not committed)")


@deploy_app.command("promote")
def deploy_promote(env: str, tag: TagOpt = None, digest: DigestOpt = None,
                   commit: CommitOpt = False,
                   image_facts: Annotated[Path | None, typer.Option(
                       "--image-facts", help="facts.json of the image step "
                       "(reports/image/facts.json): pin its image by the digest it recorded.")]
                   = None) -> None:
    """Pin a new image (production: by digest): once merged, the canary starts."""
    new_name = None
    if image_facts is not None:
        if tag or digest:
            raise pins.PinError("give --image-facts or --tag/--digest, not both")
        new_name, digest = pins.digest_from_facts(image_facts)
    _pin_change(env, "promote", tag, digest, commit, new_name)


@deploy_app.command("abort")
def deploy_abort(env: str, tag: TagOpt = None, digest: DigestOpt = None,
                 commit: CommitOpt = False) -> None:
    """Stop a canary in progress: pin back the previous (stable) image."""
    _pin_change(env, "abort", tag, digest, commit)


@deploy_app.command("rollback")
def deploy_rollback(env: str, tag: TagOpt = None, digest: DigestOpt = None,
                    commit: CommitOpt = False) -> None:
    """Revert the pin to the previous image in git history (or to --tag/--digest)."""
    _pin_change(env, "rollback", tag, digest, commit)


@rollout_app.command("apply")
def rollout_apply(env: EnvsOpt = None) -> None:
    """kubectl apply the rendered overlays (cluster: KUBE_CONFIG or EKS_CLUSTER)."""
    envs = env or rollout.all_overlays()
    if not envs:
        raise PipelineError("no overlay under k8s/overlays/<env>/kustomization.yaml to apply")
    with rollout.cluster_access() as kubeconfig:
        print("\n".join(rollout.apply(envs, kubeconfig)))


@rollout_app.command("watch")
def rollout_watch(env: EnvsOpt = None,
                  timeout: Annotated[float, typer.Option(help="Seconds per overlay.")] = 4800,
                  interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 15
                  ) -> None:
    """Follow each applied overlay's canary until it is promoted (exit 0) or aborted (exit 1)."""
    with rollout.cluster_access() as kubeconfig:
        for name in env or rollout.all_overlays():
            rollout.watch(rollout.get_rollout(kubeconfig, name), timeout, interval)
            print(f"rollout: {name} is healthy on the new revision")


@rollout_app.command("prune-config")
def rollout_prune_config(env: EnvsOpt = None,
                         dry_run: Annotated[bool, typer.Option(help="Only list.")] = False
                         ) -> None:
    """Delete the old generated settings ConfigMaps/Secrets that no ReplicaSet reads (Argo CD
    keeps them: Prune=false)."""
    with rollout.cluster_access() as kubeconfig:
        for name in env or rollout.changed_overlays():
            print("\n".join(rollout.prune_config(name, kubeconfig, dry_run=dry_run)))


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
    app.add_typer(rollout_app, name="rollout")
