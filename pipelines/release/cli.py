"""Commands of the release: the retrain workflow's steps, the production pointer, the Bento,
and pull requests and issues through the GitHub API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.core.cli import ParamsOpt, new_app
from pipelines.core.data import file_md5
from pipelines.core.production import PROMOTION_FILES
from pipelines.core.production import promote as promote_model
from pipelines.release import image as image_build
from pipelines.release import retrain
from pipelines.release.github import GitHub, open_or_comment_issue, open_or_update_pr
from pipelines.release.revert import revert
from pipelines.runtime.errors import MissingFileError
from pipelines.runtime.metadata import METADATA_FILE, is_model_dir
from pipelines.runtime.params import PARAMS_FILE, load_params
from service.bento import build_bento

retrain_app = new_app("Steps of the retrain workflow.")
image_app = new_app("The service image: built from the Bento's generated Dockerfile, its facts.")
github_app = new_app("Pull requests and issues through the GitHub REST API "
                     "(GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN).")


@retrain_app.command("summary")
def retrain_summary(out: Annotated[Path | None, typer.Option(
        help="File to append to (default: $GITHUB_STEP_SUMMARY, else print).")] = None) -> None:
    """Write the comparison and load-test reports as the job summary (also after a reject)."""
    target = retrain.write_job_summary(out)
    if target:
        print(f"retrain: job summary appended to {target}")


@retrain_app.command("preflight")
def retrain_preflight(
        default_branch: Annotated[str, typer.Option(
            envvar="DEFAULT_BRANCH", help="The repository's default branch (env DEFAULT_BRANCH).")
        ] = "main",
        promotion_token: Annotated[bool, typer.Option(
            envvar="PROMOTION_TOKEN_SET",
            help="Whether PROMOTION_TOKEN is set (env PROMOTION_TOKEN_SET=true|false).")] = False,
        remote: Annotated[str, typer.Option(help="Git remote of the default branch.")] = "origin"
        ) -> None:
    """Before training: refuse what would fail the run after it (an in-repo or unsupported DVC
    remote; a workflow change that GITHUB_TOKEN may not push)."""
    print(retrain.preflight(default_branch, promotion_token, remote))


@retrain_app.command("use-remote")
def retrain_use_remote(
        url: Annotated[str, typer.Argument(help="s3://bucket/path of the object store.")],
        endpoint_url: Annotated[str | None, typer.Option(
            help="Endpoint of an S3-compatible store (MinIO, R2, ...).")] = None) -> None:
    """Make URL the default DVC remote and upload the data version and the production model
    that main's pointers name (`make remote URL=...`)."""
    print(retrain.use_remote(url, endpoint_url))


@retrain_app.command("plan")
def retrain_plan(out: Annotated[Path | None, typer.Option(
        help="File to append propose=true|false to (default: $GITHUB_OUTPUT).")] = None) -> None:
    """Decide whether the propose job runs (false after a reject or when production already
    runs the candidate)."""
    retrain.plan(out)


@retrain_app.command("push-outputs")
def retrain_push_outputs() -> None:
    """`dvc push` the data, the production weights and the stages' outputs to the DVC remote."""
    print(retrain.push_outputs())


@retrain_app.command("restore")
def retrain_restore() -> None:
    """Pull the evaluated candidate (named by dvc.lock) back from the DVC remote and check it."""
    print(retrain.restore())


@retrain_app.command("image")
def retrain_image() -> None:
    """Containerise the Bento and push it to the registry the production overlay names."""
    reference = retrain.build_image()
    if reference:
        print(f"image: pushed {reference}")


@retrain_app.command("propose")
def retrain_propose(
        source_branch: Annotated[str, typer.Option(
            envvar="SOURCE_BRANCH", help="Branch that was retrained (env SOURCE_BRANCH).")],
        remote: Annotated[str, typer.Option(help="Git remote to push to.")] = "origin") -> None:
    """Push promote/<branch> with the production pin + model pointer; open or update its PR
    (PROMOTION_TOKEN when set, else GITHUB_TOKEN); dispatch `ci` on it when GITHUB_TOKEN."""
    retrain.propose(source_branch, remote)


def _read_body(body_file: Path) -> str:
    if not body_file.is_file():
        raise MissingFileError(f"{body_file}: body file not found")
    return body_file.read_text(encoding="utf-8")


@github_app.command("open-pr")
def github_open_pr(head: str, title: str, body_file: Path,
                   base: Annotated[str | None, typer.Option(
                       help="Target branch (default: the repository's default branch).")] = None
                   ) -> None:
    """Open the pull request for HEAD, or update the one already open (one PR per branch)."""
    gh, body = GitHub.from_env(), _read_body(body_file)
    action, pull = open_or_update_pr(gh, head, base or gh.default_branch(), title, body)
    print(f"github: {action} pull request #{pull['number']} {pull['html_url']}")


@github_app.command("open-issue")
def github_open_issue(title: str, body_file: Path, label: str = "drift") -> None:
    """Open an issue, or comment on the open one with the same title and label."""
    gh, body = GitHub.from_env(), _read_body(body_file)
    action, issue = open_or_comment_issue(gh, title, body, label)
    print(f"github: {action} issue #{issue['number']} {issue['html_url']}")


def promote(model: Annotated[Path, typer.Argument(help="Model directory to promote.")]
            = Path("models/candidate"),
            metrics: Annotated[Path, typer.Argument(help="Its holdout metrics (evaluate).")]
            = Path("reports/metrics/candidate.json"),
            bento_tag: Annotated[str | None, typer.Option(help="Bento tag built from it.")] = None,
            image: Annotated[str | None, typer.Option(help="Image reference.")] = None,
            push: Annotated[bool, typer.Option(help="dvc push the weights.")] = False,
            params: ParamsOpt = PARAMS_FILE) -> None:
    """Make a model production: rewrite models/production.yaml and models/production(.dvc)."""
    holdout_md5 = file_md5(load_params(params).data.holdout_file)
    record = promote_model(model, metrics, holdout_md5, bento_tag, image, push=push)
    print(f"promote: {record.version} is production ({' and '.join(PROMOTION_FILES)}"
          f"{', pushed' if push else ''}); commit both")


def bento(model: Path = Path("models/candidate")) -> None:
    """Import the model into the repo's BentoML store (.bentoml) and build the Bento."""
    if not is_model_dir(model):
        raise MissingFileError(
            f"{model}: no trained model ({METADATA_FILE} missing); run `make repro` first")
    tag = build_bento(model)
    print(f"bento: built {tag} in .bentoml/bentos (serve: make serve; "
          f"containerize: bentoml containerize {tag})")


@image_app.command("build")
def image_build_command(
        bento: Annotated[str, typer.Option(help="Bento tag.")] = "moderation:latest",
        tag: Annotated[str | None, typer.Option(
            help="Image reference (default localhost/moderation:<Bento version>).")] = None,
        backend: Annotated[str, typer.Option(help="docker | podman")] = "podman",
        base: Annotated[str, typer.Option(
            help="upstream (the Dockerfile's FROM) | local (a Debian base made here with "
                 "mmdebstrap; podman) | an image name")] = "upstream",
        local_index: Annotated[bool, typer.Option(
            help="Give the build this machine's pip package index (podman).")] = False,
        out: Annotated[Path, typer.Option(help="Where facts and the SBOM go.")] = Path(
            "reports/image")) -> None:
    """Build the service image from the Bento, then write its facts and CycloneDX SBOM."""
    bento_tag = image_build.bento_spec(bento)["tag"]
    reference = tag or f"localhost/moderation:{bento_tag.partition(':')[2]}"
    build_s = image_build.build(bento_tag, reference, backend, base, local_index)
    sbom = image_build.sbom(reference, out / "sbom.cdx.json", backend)
    facts = image_build.facts(reference, bento_tag, backend, build_s, sbom)
    image_build.write_facts(facts, out)
    print(f"image: built {reference} in {build_s:.0f} s, {facts.size_bytes / 1e6:.0f} MB, "
          f"{facts.digest}; facts in {out}/facts.md, SBOM {sbom}")


def rollout_revert(
        failed_sha: Annotated[str, typer.Option(
            envvar="FAILED_SHA", help="Commit whose rollout failed (env FAILED_SHA).")],
        remote: Annotated[str, typer.Option(help="Git remote to push to.")] = "origin") -> None:
    """Push revert/<sha> putting back the pins and model pointer, open its pull request
    (PROMOTION_TOKEN when set, else GITHUB_TOKEN) and make `ci` run on it."""
    revert(failed_sha, remote)


def register(app: typer.Typer, rollout_app: typer.Typer) -> None:
    rollout_app.command("revert")(rollout_revert)
    app.add_typer(retrain_app, name="retrain")
    app.add_typer(github_app, name="github")
    app.add_typer(image_app, name="image")
    app.command()(promote)
    app.command()(bento)
