"""Command line of the pipeline: every dvc.yaml stage and make target calls one of these."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.data import DataError
from pipelines.params import ParamsError, apply_profile, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Moderation pipeline: data, validate, train, evaluate.")
data_app = typer.Typer(no_args_is_help=True, help="The dataset behind data.dvc.")
app.add_typer(data_app, name="data")

ParamsOpt = Annotated[Path, typer.Option("--params", help="Parameters file.")]


def _fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _params(path: Path):
    try:
        return load_params(path)
    except ParamsError as e:
        _fail(str(e), 2)


@data_app.command("pull")
def data_pull(pointer: Path = Path("data.dvc")) -> None:
    """Resolve the data pointer from the DVC cache or remote."""
    from pipelines.data import pull_data

    try:
        digest = pull_data(pointer)
    except DataError as e:
        _fail(str(e))
    print(f"data: {pointer} resolved to version {digest} in data/")


@data_app.command("import-tweeteval")
def data_import(source: Path, out: Path = Path("data")) -> None:
    """Convert TweetEval-style text/label files into the tidy CSVs (train.csv, holdout.csv)."""
    from pipelines.data import import_tweeteval

    print(json.dumps(import_tweeteval(source, out), indent=2))


@app.command()
def profile(file: Path, params: ParamsOpt = Path("params.yaml")) -> None:
    """Lay a profile's overrides over params.yaml (e.g. the smoke profile, on a scratch clone)."""
    try:
        apply_profile(file, params)
    except ParamsError as e:
        _fail(str(e), 2)
    print(f"profile: {file} applied to {params}")


@app.command("check-params")
def check_params(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml against its schema."""
    _params(params)
    print(f"{params}: ok")


@app.command()
def validate(report: Path = Path("reports/validation.json"),
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Check the training data and the holdout; exit 1 on any error-level finding."""
    from pipelines import validate as stage

    try:
        stage.run(_params(params), report)
    except DataError as e:
        _fail(str(e))


@app.command()
def train(out: Path = Path("models/candidate"), params: ParamsOpt = Path("params.yaml")) -> None:
    """Fine-tune the transformer candidate."""
    from pipelines.train import train as run_train

    try:
        run_train(_params(params), out)
    except DataError as e:
        _fail(str(e))


@app.command("train-baseline")
def train_baseline(out: Path = Path("models/baseline"),
                   params: ParamsOpt = Path("params.yaml")) -> None:
    """Fit the TF-IDF + logistic regression baseline."""
    from pipelines.baseline import train_baseline as run_baseline

    try:
        run_baseline(_params(params), out)
    except DataError as e:
        _fail(str(e))


@app.command()
def evaluate(name: str, model: Path, metrics: Path, plots: Path,
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Score one model on the frozen holdout."""
    from pipelines.evaluate import evaluate as run_evaluate

    try:
        run_evaluate(_params(params), name, model, metrics, plots)
    except (DataError, FileNotFoundError) as e:
        _fail(str(e))


@app.command()
def summary(metrics_dir: Path = Path("reports/metrics")) -> None:
    """Print the holdout metrics of every evaluated model and where the outputs are."""
    files = sorted(metrics_dir.glob("*.json"))
    if not files:
        _fail(f"no metrics in {metrics_dir}: run `dvc repro` first")
    print(f"{'model':<12} {'version':<34} {'macro-F1':>8} {'ROC-AUC':>8} {'PR-AUC':>8} {'ECE':>6}")
    for path in files:
        m = json.loads(path.read_text(encoding="utf-8"))
        print(f"{path.stem:<12} {m['model_version']:<34} {m['macro_f1']:>8.4f} "
              f"{m['roc_auc'] or 0:>8.4f} {m['pr_auc'] or 0:>8.4f} {m['calibration_error']:>6.3f}")
    print("outputs: models/ (trained models), reports/metrics/ (metrics), "
          "reports/plots/ (confusion matrices, PR curves), reports/validation.json")


# --- deploy: the image pin of each k8s overlay, as git changes (docs/deployment.md) -----------

deploy_app = typer.Typer(no_args_is_help=True,
                         help="Kubernetes overlays: image pins, rendered diffs, validation.")
app.add_typer(deploy_app, name="deploy")
TagOpt = Annotated[str | None, typer.Option("--tag", help="Image tag (the Bento version).")]
DigestOpt = Annotated[str | None, typer.Option("--digest", help="Image digest, sha256:...")]
CommitOpt = Annotated[bool, typer.Option("--commit", help="Commit the change (only that file).")]


def _deploy(call):
    from pipelines.deploy import PinError
    from pipelines.kustomize import ManifestError

    try:
        return call()
    except (PinError, ManifestError) as e:
        _fail(str(e))


@deploy_app.command("validate")
def deploy_validate() -> None:
    """Render every overlay (and the shadow/flagger variants) and check schemas and policy."""
    from pipelines.deploy import validate_repository
    from pipelines.k8s_policy import KUBERNETES_VERSION

    findings = _deploy(validate_repository)
    for finding in findings:
        print(f"error: {finding}", file=sys.stderr)
    if findings:
        _fail(f"{len(findings)} problem(s) in k8s/")
    print(f"k8s: every overlay renders, passes kubernetes-validate --strict "
          f"(Kubernetes {KUBERNETES_VERSION}) and the delivery policy")


@deploy_app.command("pin")
def deploy_pin(env: str) -> None:
    """Print the image an environment is pinned to."""
    from pipelines.deploy import read_pin

    print(_deploy(lambda: read_pin(env)).reference)


@deploy_app.command("set-image")
def deploy_set_image(env: str, tag: TagOpt = None, digest: DigestOpt = None) -> None:
    """Change the one image pin of an overlay (edits the file, commits nothing)."""
    from pipelines.deploy import set_image

    before, after = _deploy(lambda: set_image(env, tag, digest))
    print(f"{env}: {before.reference} -> {after.reference}")


@deploy_app.command("diff")
def deploy_diff(env: str, against: Annotated[str, typer.Option(help="Git ref to compare with.")]
                = "HEAD", out: Annotated[Path | None, typer.Option(help="Write here.")] = None
                ) -> None:
    """Markdown of the pin change and the rendered-manifest diff (the promotion PR body)."""
    from pipelines.deploy import diff_markdown

    text = _deploy(lambda: diff_markdown(env, against))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"diff of {env} against {against} written to {out}")
    else:
        print(text, end="")


def _pin_change(env: str, action: str, tag, digest, commit: bool) -> None:
    from pipelines.deploy import change_pin

    change = _deploy(lambda: change_pin(env, action, tag, digest, commit))
    print(change.message.rstrip())
    print(f"committed {change.commit}" if change.commit
          else f"k8s/overlays/{env}/kustomization.yaml changed (not committed)")


@deploy_app.command("promote")
def deploy_promote(env: str, tag: TagOpt = None, digest: DigestOpt = None,
                   commit: CommitOpt = False) -> None:
    """Pin a new image: once merged, the canary 10/20/30/100 starts."""
    _pin_change(env, "promote", tag, digest, commit)


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

workflows_app = typer.Typer(no_args_is_help=True,
                            help="The GitHub workflows, generated from pipelines/workflows.py.")
app.add_typer(workflows_app, name="workflows")
retrain_app = typer.Typer(no_args_is_help=True, help="Steps of the retrain workflow.")
app.add_typer(retrain_app, name="retrain")
github_app = typer.Typer(no_args_is_help=True,
                         help="Pull requests and issues through the GitHub REST API "
                              "(GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN).")
app.add_typer(github_app, name="github")


@workflows_app.command("generate")
def workflows_generate(root: Path = Path(".")) -> None:
    """Rewrite .github/workflows/*.yml (retrain's trigger paths come from dvc.yaml)."""
    from pipelines.triggers import TriggerError
    from pipelines.workflows import write_workflows

    try:
        written = write_workflows(root)
    except TriggerError as e:
        _fail(str(e), 2)
    print("workflows: wrote " + ", ".join(str(p) for p in written))


@workflows_app.command("triggers")
def workflows_triggers(root: Path = Path(".")) -> None:
    """Print retrain's trigger paths, and why each declared dep that is not one is left out."""
    from pipelines.triggers import (
        TriggerError,
        classify_dep,
        dvc_pointers,
        resolve_stages,
        retrain_trigger_paths,
    )

    try:
        stages = resolve_stages(root)
        paths = retrain_trigger_paths(root)
    except TriggerError as e:
        _fail(str(e), 2)
    print("retrain triggers on:\n" + "\n".join(f"  {p}" for p in paths))
    outputs, pointers = {out for stage in stages for out in stage.outs}, dvc_pointers(root)
    reasons = {"internal": "produced by a stage", "promotion": "written by a promotion"}
    left_out = {}
    for dep in {dep for stage in stages for dep in stage.deps}:
        kind, _ = classify_dep(dep, outputs, pointers)
        if kind in reasons:
            left_out[dep] = reasons[kind]
    print("declared but not triggers:\n" + "\n".join(
        f"  {dep} ({why})" for dep, why in sorted(left_out.items())))


@workflows_app.command("check")
def workflows_check(root: Path = Path(".")) -> None:
    """Fail when a workflow differs from the generator or breaks a security rule."""
    from pipelines.workflow_rules import check_workflow
    from pipelines.workflows import WORKFLOW_DIR, all_workflows, out_of_sync

    problems = out_of_sync(root)
    for name in all_workflows(root):
        path = root / WORKFLOW_DIR / name
        if path.exists():
            problems.extend(check_workflow(path))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        _fail(f"{len(problems)} workflow problem(s)")
    print(f"workflows: {len(all_workflows(root))} files in sync and within the rules")


@retrain_app.command("summary")
def retrain_summary(out: Annotated[Path | None, typer.Option(
        help="File to append to (default: $GITHUB_STEP_SUMMARY, else print).")] = None) -> None:
    """Write the comparison and load-test reports as the job summary (also after a reject)."""
    from pipelines.retrain import write_job_summary

    target = write_job_summary(out)
    if target:
        print(f"retrain: job summary appended to {target}")


def _retrain(call):
    from pipelines.deploy import PinError
    from pipelines.github import GitHubError
    from pipelines.gitops import GitError
    from pipelines.production import ProductionError
    from pipelines.retrain import RetrainError

    try:
        return call()
    except (RetrainError, GitError, GitHubError, PinError, ProductionError,
            FileNotFoundError) as e:
        _fail(str(e))


@retrain_app.command("push-outputs")
def retrain_push_outputs() -> None:
    """`dvc push` the data, the production weights and the stages' outputs to the DVC remote."""
    from pipelines.retrain import push_outputs

    print(_retrain(push_outputs))


@retrain_app.command("restore")
def retrain_restore() -> None:
    """Pull the evaluated candidate (named by dvc.lock) back from the DVC remote and check it."""
    from pipelines.retrain import restore

    print(_retrain(restore))


@retrain_app.command("image")
def retrain_image() -> None:
    """Containerise the Bento and push it to the registry the production overlay names."""
    from pipelines.retrain import build_image

    reference = _retrain(build_image)
    if reference:
        print(f"image: pushed {reference}")


@retrain_app.command("propose")
def retrain_propose(
        source_branch: Annotated[str, typer.Option(
            envvar="SOURCE_BRANCH", help="Branch that was retrained (env SOURCE_BRANCH).")],
        remote: Annotated[str, typer.Option(help="Git remote to push to.")] = "origin") -> None:
    """Push promote/<branch> with the production pin + model pointer; open or update its PR."""
    import os

    from pipelines.retrain import propose

    _retrain(lambda: propose(source_branch, remote, os.environ.get("GITHUB_TOKEN")))


def _github():
    from pipelines.github import GitHub, GitHubError

    try:
        return GitHub.from_env()
    except GitHubError as e:
        _fail(str(e), 2)


def _read_body(body_file: Path) -> str:
    if not body_file.is_file():
        _fail(f"{body_file}: body file not found")
    return body_file.read_text(encoding="utf-8")


@github_app.command("open-pr")
def github_open_pr(head: str, title: str, body_file: Path,
                   base: Annotated[str | None, typer.Option(
                       help="Target branch (default: the repository's default branch).")] = None
                   ) -> None:
    """Open the pull request for HEAD, or update the one already open (one PR per branch)."""
    from pipelines.github import GitHubError, open_or_update_pr

    gh, body = _github(), _read_body(body_file)
    try:
        action, pull = open_or_update_pr(gh, head, base or gh.default_branch(), title, body)
    except GitHubError as e:
        _fail(str(e))
    print(f"github: {action} pull request #{pull['number']} {pull['html_url']}")


@github_app.command("open-issue")
def github_open_issue(title: str, body_file: Path, label: str = "drift") -> None:
    """Open an issue, or comment on the open one with the same title and label."""
    from pipelines.github import GitHubError, open_or_comment_issue

    gh, body = _github(), _read_body(body_file)
    try:
        action, issue = open_or_comment_issue(gh, title, body, label)
    except GitHubError as e:
        _fail(str(e))
    print(f"github: {action} issue #{issue['number']} {issue['html_url']}")


@app.command()
def doctor(root: Path = Path("."),
           offline: Annotated[bool, typer.Option(
               help="Do not contact the DVC remote.")] = False) -> None:
    """Check a fork's configuration (DVC remote, image pins, Argo CD app, settings, workflows)."""
    from pipelines.doctor import diagnose, format_checks

    checks = diagnose(root, reach=not offline)
    print(format_checks(checks))
    missing = [c for c in checks if c.status == "missing"]
    if missing:
        _fail(f"{len(missing)} setting(s) missing: fix the MISSING lines above "
              "(docs/workflows.md, 'Use this template')")
    print("doctor: the loop is configured" + (" (see the warnings)" if any(
        c.status == "warn" for c in checks) else ""))

def _gate_fails_job(ci: bool | None) -> bool:
    """A reject exits 1 with --ci, or by default on CI (CI=true); --no-ci never (dvc repro)."""
    import os

    return ci if ci is not None else os.environ.get("CI", "").lower() == "true"


@app.command()
def compare(candidate: Annotated[Path, typer.Argument(help="Candidate model directory.")]
            = Path("models/candidate"),
            out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/compare"),
            ci: Annotated[bool | None, typer.Option(
                "--ci/--no-ci", help="Exit 1 on reject (default: when CI=true).")] = None,
            link_base: Annotated[str, typer.Option(
                help="URL the report folder is published at; prefixes the PR body's links.")]
            = "",
            params: ParamsOpt = Path("params.yaml")) -> None:
    """Compare the candidate with production on the frozen holdout; write reports and verdict."""
    from pipelines.compare import run as run_compare
    from pipelines.production import ProductionError

    try:
        decision = run_compare(_params(params), candidate, out, link_base)
    except (ProductionError, DataError, FileNotFoundError) as e:
        _fail(str(e))
    if decision["verdict"] == "reject" and _gate_fails_job(ci):
        _fail(f"candidate rejected by the gate: {', '.join(decision['failed'])}; "
              f"see {out / 'pr_body.md'}")


@app.command()
def promote(model: Annotated[Path, typer.Argument(help="Model directory to promote.")]
            = Path("models/candidate"),
            metrics: Annotated[Path, typer.Argument(help="Its holdout metrics (evaluate).")]
            = Path("reports/metrics/candidate.json"),
            bento_tag: Annotated[str | None, typer.Option(help="Bento tag built from it.")] = None,
            image: Annotated[str | None, typer.Option(help="Image reference.")] = None,
            push: Annotated[bool, typer.Option(help="dvc push the weights.")] = False,
            params: ParamsOpt = Path("params.yaml")) -> None:
    """Make a model production: rewrite models/production.yaml and models/production(.dvc)."""
    from pipelines.data import file_md5
    from pipelines.production import ProductionError
    from pipelines.production import promote as run_promote

    p = _params(params)
    try:
        record = run_promote(model, metrics, file_md5(p.data.holdout_file), bento_tag, image,
                             push=push)
    except (ProductionError, FileNotFoundError) as e:
        _fail(str(e))
    print(f"promote: {record['version']} is production (models/production.yaml, "
          f"models/production.dvc{', pushed' if push else ''}); commit both")


@app.command()
def verdict(out: Annotated[Path, typer.Argument(help="Report folder of `compare`.")]
            = Path("reports/compare"),
            ci: Annotated[bool | None, typer.Option(
                "--ci/--no-ci", help="Exit 1 on reject (default: when CI=true).")] = None
            ) -> None:
    """Print the comparison's verdict and where its reports are; the gate of `make compare`."""
    path = out / "decision.json"
    if not path.exists():
        _fail(f"{path}: no comparison yet; run `make compare` or `dvc repro compare`")
    decision = json.loads(path.read_text(encoding="utf-8"))
    against = (f"production {decision['production_version']}" if decision["production_version"]
               else "no production model (floors only)")
    print(f"verdict: {decision['verdict'].upper()} for {decision['candidate_version']} vs "
          f"{against}" + (f"; failed: {', '.join(decision['failed'])}" if decision["failed"]
                          else ""))
    for name in ("pr_body.md", "quality.html", "drift.html", "decision.json"):
        if (out / name).exists():
            print(f"  {out / name}")
    if decision["verdict"] == "reject" and _gate_fails_job(ci):
        _fail(f"candidate rejected by the gate: {', '.join(decision['failed'])}; "
              f"see {out / 'pr_body.md'}")


@app.command()
def bento(model: Path = Path("models/candidate")) -> None:
    """Import the model into the repo's BentoML store (.bentoml) and build the Bento."""
    from service.bento import build_bento

    if not (model / "metadata.json").exists():
        _fail(f"{model}: no trained model (metadata.json missing); run `make repro` first")
    tag = build_bento(model)
    print(f"bento: built {tag} in .bentoml/bentos (serve: make serve; "
          f"containerize: bentoml containerize {tag})")


@app.command()
def loadtest(bento_tag: Annotated[str, typer.Option("--bento")] = "moderation:latest",
             host: Annotated[str | None, typer.Option(help="Test this running service")] = None,
             out: Path = Path("reports/loadtest"),
             production_record: Path = Path("models/production-loadtest.json"),
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Serve the Bento on loopback, run Locust headless and apply the load-test gate."""
    from loadtests.run import run_loadtest

    summary = run_loadtest(_params(params), bento_tag, out, production_record, host)
    if not summary["verdict"]["passed"]:
        _fail(f"load-test gate failed; see {out / 'summary.md'}")


@app.command("review")
def review(host: Annotated[str | None, typer.Option(help="Default: feedback.host.")] = None,
           port: Annotated[int | None, typer.Option(help="Default: feedback.port.")] = None,
           params: ParamsOpt = Path("params.yaml")) -> None:
    """Serve the review UI over the prediction log (token: MODERATION_REVIEW_TOKEN)."""
    from service.review.app import serve
    from service.review.settings import load_review_settings

    try:
        settings = load_review_settings(params)
    except ParamsError as e:
        _fail(str(e), 2)
    serve(settings, host, port)


@app.command("feedback")
def feedback(db_url: Annotated[str | None, typer.Option(
                 "--db-url", help="Prediction log; default serve.db_url or MODERATION_DB_URL.")]
             = None,
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Append reviewed predictions to the training data and commit data.dvc on a new branch."""
    from pipelines.feedback import FeedbackError, describe, export_feedback
    from service.settings import load_settings

    parsed = _params(params)
    try:
        url = db_url or load_settings(params).db_url
        result = export_feedback(parsed, url)
    except (FeedbackError, ParamsError, DataError) as e:
        _fail(str(e))
    print(describe(result, parsed.data.train_file))


# --- rollout and drift: the steps of the rollout and drift workflows (docs/workflows.md) ------

rollout_app = typer.Typer(no_args_is_help=True,
                          help="Push-model deploy: apply the changed overlays, watch, revert.")
app.add_typer(rollout_app, name="rollout")
drift_app = typer.Typer(no_args_is_help=True,
                        help="Logged predictions against production's training data.")
app.add_typer(drift_app, name="drift")
EnvsOpt = Annotated[list[str] | None, typer.Option(
    "--env", help="Overlay(s); default: those the last commit changed (HEAD^..HEAD).")]


def _rollout(call):
    from pipelines.deploy import PinError
    from pipelines.github import GitHubError
    from pipelines.gitops import GitError
    from pipelines.kustomize import ManifestError
    from pipelines.rollout import RolloutError

    try:
        return call()
    except (RolloutError, GitError, GitHubError, PinError, ManifestError) as e:
        _fail(str(e))


def _envs(envs: list[str] | None) -> list[str]:
    from pipelines.rollout import changed_overlays

    return envs or _rollout(changed_overlays)


@rollout_app.command("apply")
def rollout_apply(env: EnvsOpt = None) -> None:
    """kubectl apply the rendered overlays (cluster: KUBE_CONFIG or EKS_CLUSTER)."""
    from pipelines.rollout import apply, cluster_access

    envs = _envs(env)
    if not envs:
        print("rollout: the last commit changed no overlay; nothing to apply")
        return

    def run_apply() -> list[str]:
        with cluster_access() as kubeconfig:
            return apply(envs, kubeconfig)

    print("\n".join(_rollout(run_apply)))


@rollout_app.command("watch")
def rollout_watch(env: EnvsOpt = None,
                  timeout: Annotated[float, typer.Option(help="Seconds per overlay.")] = 4800,
                  interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 15
                  ) -> None:
    """Follow each applied overlay's canary until it is promoted (exit 0) or aborted (exit 1)."""
    from pipelines.rollout import cluster_access, get_rollout, watch

    def run_watch() -> None:
        with cluster_access() as kubeconfig:
            for name in _envs(env):
                watch(get_rollout(kubeconfig, name), timeout, interval)
                print(f"rollout: {name} is healthy on the new revision")

    _rollout(run_watch)


@rollout_app.command("revert")
def rollout_revert(
        failed_sha: Annotated[str, typer.Option(
            envvar="FAILED_SHA", help="Commit whose rollout failed (env FAILED_SHA).")],
        remote: Annotated[str, typer.Option(help="Git remote to push to.")] = "origin") -> None:
    """Push revert/<sha> putting back the pins and model pointer, and open its pull request."""
    import os

    from pipelines.rollout import revert

    _rollout(lambda: revert(failed_sha, remote, os.environ.get("GITHUB_TOKEN")))


def _drift(call):
    from pipelines.drift import DriftError
    from pipelines.github import GitHubError
    from pipelines.production import ProductionError
    from service.predlog import DatabaseURLError

    try:
        return call()
    except (DriftError, GitHubError, ProductionError, DatabaseURLError) as e:
        _fail(str(e))


@drift_app.command("sample")
def drift_sample(db_url: Annotated[str | None, typer.Option(
                     "--db-url", help="Prediction log; default MODERATION_DB_URL or serve.db_url.")]
                 = None,
                 out: Path = Path("reports/drift/current.csv"),
                 params: ParamsOpt = Path("params.yaml")) -> None:
    """Write the newest logged predictions (compare.drift_sample_rows of them) to a CSV."""
    from pipelines.drift import sample_predictions
    from service.settings import load_settings

    rows = _params(params).compare.drift_sample_rows

    def run_sample() -> Path:
        return sample_predictions(db_url or load_settings(params).db_url, rows, out)

    path = _drift(run_sample)
    print(f"drift: sampled the newest logged predictions into {path}")


@drift_app.command("report")
def drift_report_command(current: Path = Path("reports/drift/current.csv"),
                         out: Path = Path("reports/drift"),
                         params: ParamsOpt = Path("params.yaml")) -> None:
    """Evidently drift report of the sample against production's training data."""
    from pipelines.drift import drift_against_production

    summary = _drift(lambda: drift_against_production(_params(params), current, out))
    print(f"drift: {'DRIFT in ' + ', '.join(summary['drifted']) if summary['flagged'] else 'none'}"
          f"; report {summary['html']}, summary {out / 'summary.md'}")


@drift_app.command("open-issue")
def drift_open_issue(out: Path = Path("reports/drift")) -> None:
    """Open an issue (or comment on the open one) when the report found drift."""
    from pipelines.drift import open_issue_if_drifted

    outcome = _drift(lambda: open_issue_if_drifted(_github(), out))
    if outcome is None:
        print("drift: no drift; no issue")
        return
    action, issue = outcome
    print(f"drift: {action} issue #{issue['number']} {issue['html_url']}")
