"""Deployment as git changes: the image pin of each overlay, the rendered diff a promotion PR
carries, promote / abort / rollback, and the offline validation of every overlay."""

from __future__ import annotations

import difflib
import io
import os
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from pipelines.core.gitops import git
from pipelines.deploy.crds import crd_findings
from pipelines.deploy.kustomize import ManifestError, parse, render, resource_id
from pipelines.deploy.platform import (
    PLATFORM_TARGET,
    platform_findings,
    render_platform,
    route_findings,
)
from pipelines.deploy.policy import (
    CRD_VALIDATED,
    DIGEST,
    DIGEST_PINNED,
    Finding,
    pin_problem,
    policy_findings,
    schema_findings,
)
from pipelines.runtime.errors import PipelineError

K8S_DIR = Path("k8s")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
SHADOW_IMAGE = "moderation-shadow"


class PinError(PipelineError):
    """An overlay whose image pin is missing, ambiguous or invalid, or a bad pin value."""


@dataclass(frozen=True)
class ImagePin:
    """The `images:` entry that pins the service image in one overlay."""

    name: str
    new_name: str | None
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        image = self.new_name or self.name
        return f"{image}@{self.digest}" if self.digest else f"{image}:{self.tag}"


def overlay_dir(env: str, root: Path = Path(".")) -> Path:
    path = Path(root) / K8S_DIR / "overlays" / env
    if not (path / "kustomization.yaml").is_file():
        known = sorted(p.name for p in (Path(root) / K8S_DIR / "overlays").glob("*/"))
        raise PinError(f"no overlay {env!r} ({path}/kustomization.yaml missing); known: {known}")
    return path


def overlays(root: Path = Path(".")) -> list[str]:
    """Names of the environments under k8s/overlays."""
    return sorted(p.parent.name for p in (Path(root) / K8S_DIR / "overlays").glob(
        "*/kustomization.yaml"))


def service_image(root: Path = Path(".")) -> str:
    """The image name the base Deployment runs: the one source of truth the pins refer to."""
    path = Path(root) / K8S_DIR / "base" / "deployment.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc["spec"]["template"]["spec"]["containers"][0]["image"]


def check_pin_value(tag: str | None, digest: str | None) -> None:
    """Reject anything but exactly one concrete tag or sha256 digest (never latest)."""
    if bool(tag) == bool(digest):
        raise PinError("give exactly one of a tag or a digest")
    if tag is not None and (not TAG.match(tag) or tag == "latest"):
        raise PinError(f"tag {tag!r} is not a concrete image tag (latest is never allowed)")
    if digest is not None and not DIGEST.match(digest):
        raise PinError(f"digest {digest!r} is not sha256:<64 hex characters>")


def pin_from_text(text: str, where: str, image: str) -> ImagePin:
    """The service-image pin in a kustomization.yaml text; exactly one entry, tag or digest."""
    doc = yaml.safe_load(text) or {}
    entries = [e for e in doc.get("images") or [] if e.get("name") == image]
    if len(entries) != 1:
        raise PinError(f"{where}: needs exactly one images: entry named {image}, "
                       f"found {len(entries)}")
    entry = entries[0]
    tag = entry.get("newTag")
    digest = entry.get("digest")
    try:
        check_pin_value(None if tag is None else str(tag), digest)
    except PinError as e:
        raise PinError(f"{where}: images entry {image}: {e}") from None
    return ImagePin(image, entry.get("newName"), None if tag is None else str(tag), digest)


def read_pin(env: str, root: Path = Path(".")) -> ImagePin:
    """The current pin of an environment."""
    path = overlay_dir(env, root) / "kustomization.yaml"
    return pin_from_text(path.read_text(encoding="utf-8"), str(path), service_image(root))


def set_image(env: str, tag: str | None = None, digest: str | None = None,
              root: Path = Path("."), new_name: str | None = None) -> tuple[ImagePin, ImagePin]:
    """Rewrite the overlay's one pin in place (comments kept), and its registry/name when
    new_name differs from the image's; returns (before, after)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DoubleQuoted

    check_pin_value(tag, digest)
    before = read_pin(env, root)
    path = overlay_dir(env, root) / "kustomization.yaml"
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    doc = rt.load(path.read_text(encoding="utf-8"))
    entry = next(e for e in doc["images"] if e.get("name") == before.name)
    key, value = ("newTag", tag) if tag else ("digest", digest)
    entry.pop("digest" if tag else "newTag", None)
    # Quote tags YAML would read as numbers or booleans (e.g. 20260101).
    entry[key] = value if isinstance(yaml.safe_load(value), str) else DoubleQuoted(value)
    if new_name and new_name != (before.new_name or before.name):
        entry["newName"] = new_name
    buffer = io.StringIO()
    rt.dump(doc, buffer)
    after = pin_from_text(buffer.getvalue(), str(path), before.name)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return before, after


# ---------------------------------------------------------------------------------------------
# The rendered diff a promotion pull request carries


def _git(root: Path, *args: str) -> bytes:
    return git(root, *args, timeout=60, binary=True, error=PinError)


def render_at_ref(env: str, ref: str, root: Path = Path(".")) -> str:
    """Render an overlay as it was at a git ref (the k8s/ tree of that commit)."""
    archive = _git(root, "archive", "--format=tar", ref, str(K8S_DIR))
    with TemporaryDirectory(prefix="k8s-at-ref-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        path = Path(tmp) / K8S_DIR / "overlays" / env
        if not path.is_dir():
            raise PinError(f"overlay {env!r} does not exist at {ref}")
        return render(path)


def _changed_resources(before: str, after: str) -> list[str]:
    old = {resource_id(d): d for d in parse(before)}
    new = {resource_id(d): d for d in parse(after)}
    return sorted({r for r in old.keys() | new.keys() if old.get(r) != new.get(r)})


def diff_markdown(env: str, against: str = "HEAD", root: Path = Path(".")) -> str:
    """Markdown for the PR body: the pin change and the unified diff of the rendered overlay."""
    before_text = render_at_ref(env, against, root)
    after_text = render(overlay_dir(env, root))
    image = service_image(root)
    old_pin = _pin_at_ref(env, against, root, image)
    new_pin = read_pin(env, root)
    diff = "".join(difflib.unified_diff(
        before_text.splitlines(keepends=True), after_text.splitlines(keepends=True),
        fromfile=f"k8s/overlays/{env} @ {against}", tofile=f"k8s/overlays/{env} (this change)"))
    lines = [f"### Deployment: `{env}`", ""]
    if old_pin != new_pin:
        lines.append(f"Image pin: `{old_pin.reference if old_pin else 'none'}` → "
                     f"`{new_pin.reference}`")
    else:
        lines.append(f"Image pin unchanged: `{new_pin.reference}`")
    changed = _changed_resources(before_text, after_text)
    lines += ["", "Changed resources: " + (", ".join(f"`{r}`" for r in changed) or "none"), ""]
    if diff:
        lines += ["<details><summary>Rendered manifests diff "
                  f"(kubectl kustomize k8s/overlays/{env})</summary>", "", "```diff",
                  diff.rstrip("\n"), "```", "", "</details>"]
    else:
        lines.append("The rendered manifests are identical.")
    return "\n".join(lines) + "\n"


def _pin_at_ref(env: str, ref: str, root: Path, image: str) -> ImagePin | None:
    rel = (K8S_DIR / "overlays" / env / "kustomization.yaml").as_posix()
    try:
        text = _git(root, "show", f"{ref}:{rel}").decode()
    except PinError:
        return None
    return pin_from_text(text, f"{rel} @ {ref}", image)


# ---------------------------------------------------------------------------------------------
# Promote, abort, rollback: each one commit that changes one pin


@dataclass
class PinChange:
    env: str
    action: str
    before: ImagePin
    after: ImagePin
    message: str
    commit: str | None = field(default=None)


def pin_history(env: str, root: Path = Path(".")) -> list[tuple[str, ImagePin]]:
    """(commit, pin) for every commit that touched the overlay, newest first."""
    rel = (K8S_DIR / "overlays" / env / "kustomization.yaml").as_posix()
    shas = _git(root, "log", "--format=%H", "--", rel).decode().split()
    image = service_image(root)
    return [(sha, pin) for sha in shas if (pin := _pin_at_ref(env, sha, root, image))]


def previous_pin(env: str, root: Path = Path(".")) -> ImagePin:
    """The last pin in history that differs from the current one (what rollback returns to)."""
    current = read_pin(env, root)
    for _sha, pin in pin_history(env, root):
        if pin.reference != current.reference:
            return pin
    raise PinError(f"overlay {env!r}: git history has no earlier pin than {current.reference}; "
                   "pass --tag or --digest to say where to go")


def _commit(root: Path, env: str, message: str) -> str:
    rel = (K8S_DIR / "overlays" / env / "kustomization.yaml").as_posix()
    _git(root, "add", "--", rel)
    _git(root, "commit", "--quiet", "-m", message, "--", rel)
    return _git(root, "rev-parse", "HEAD").decode().strip()


def change_pin(env: str, action: str, tag: str | None = None, digest: str | None = None,
               commit: bool = False, root: Path = Path("."),
               new_name: str | None = None) -> PinChange:
    """Promote to a new pin, or abort / roll back to the previous one, as one git change
    (new_name: the image's registry/name when it moved, e.g. from image facts)."""
    if action not in ("promote", "abort", "rollback"):
        raise PinError(f"unknown action {action!r}")
    if action == "promote" and not (tag or digest):
        raise PinError("promote needs --tag or --digest of the new image")
    if action != "promote" and not (tag or digest):
        target = previous_pin(env, root)
        tag, digest = target.tag, target.digest
        new_name = new_name or target.new_name
    current = read_pin(env, root)
    check_pin_value(tag, digest)
    if (tag or digest) in (current.tag, current.digest):
        raise PinError(f"overlay {env!r} is already pinned to {current.reference}")
    if env in DIGEST_PINNED and not digest:
        raise PinError(f"overlay {env!r} is pinned by digest, not by tag {tag!r}: pass --digest "
                       "sha256:... or --image-facts reports/image/facts.json (the digest the "
                       "image step recorded after its push)")
    before, after = set_image(env, tag, digest, root, new_name=new_name)
    subject = {
        "promote": f"deploy({env}): promote {after.reference}",
        "abort": f"deploy({env}): abort the canary of {before.reference}",
        "rollback": f"deploy({env}): roll back {before.reference}",
    }[action]
    message = (f"{subject}\n\nPin of k8s/overlays/{env}: {before.reference} -> {after.reference}"
               f"\n\nDeploy-Action: {action}\nDeploy-Environment: {env}\n")
    change = PinChange(env, action, before, after, message)
    if commit:
        change.commit = _commit(root, env, message)
    return change


def digest_from_facts(path: Path) -> tuple[str, str]:
    """(registry/name, digest) of the image the image step pushed, from its facts.json."""
    import json

    if not Path(path).is_file():
        raise PinError(f"{path} not found: the image step writes it after its push "
                       "(`python -m pipelines retrain image`; `make image` locally)")
    try:
        facts = json.loads(Path(path).read_text(encoding="utf-8"))
        reference, digest = facts["reference"], facts["digest"]
    except (ValueError, KeyError, TypeError) as e:
        raise PinError(f"{path}: not the image step's facts (needs reference and digest): "
                       f"{e}") from None
    if not DIGEST.match(str(digest)):
        raise PinError(f"{path}: digest {digest!r} is not sha256:<64 hex characters> (was the "
                       "image pushed? the registry's digest is recorded after the push)")
    last = reference.rsplit("/", 1)[-1]
    name = reference.rpartition(":")[0] if ":" in last else reference.partition("@")[0]
    return name, digest


# ---------------------------------------------------------------------------------------------
# Offline validation of every overlay and of the optional components


@dataclass(frozen=True)
class Variant:
    """An overlay with components swapped, rendered the way docs/deployment.md enables them."""

    overlay: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    shadow_pin: bool = False


VARIANTS = {
    "production+shadow": Variant("production", add=("shadow",), shadow_pin=True),
    "production-flagger": Variant("production", add=("flagger",), remove=("rollout-argo",)),
    "production+review": Variant("production", add=("review",)),
}


def compose_variant(variant: Variant, out: Path, root: Path = Path(".")) -> Path:
    """Write a kustomization in `out` that is the overlay with the variant's components."""
    source = overlay_dir(variant.overlay, root).resolve()
    doc = yaml.safe_load((source / "kustomization.yaml").read_text(encoding="utf-8"))
    components_dir = (Path(root) / K8S_DIR / "components").resolve()

    def relocate(p: str) -> str:
        return os.path.relpath(source / p, out)

    out.mkdir(parents=True, exist_ok=True)
    # Kustomize loads files only from within the kustomization's folder: copy the overlay's own
    # resource files (environment.yaml), refer to folders where they are.
    resources = []
    for p in doc.get("resources", []):
        if (source / p).is_file():
            shutil.copyfile(source / p, out / Path(p).name)
            resources.append(Path(p).name)
        else:
            resources.append(relocate(p))
    doc["resources"] = resources
    kept = [p for p in doc.get("components", []) if Path(p).name not in variant.remove]
    doc["components"] = [relocate(p) for p in kept]
    doc["components"] += [os.path.relpath(components_dir / c, out) for c in variant.add]
    if variant.shadow_pin:
        pin = pin_from_text((source / "kustomization.yaml").read_text(encoding="utf-8"),
                            variant.overlay, service_image(root))
        doc["images"].append({"name": SHADOW_IMAGE, "newName": pin.new_name or pin.name,
                              **({"digest": pin.digest} if pin.digest else {"newTag": pin.tag})})
    out.mkdir(parents=True, exist_ok=True)
    (out / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False),
                                            encoding="utf-8")
    return out


def render_targets(root: Path = Path("."), envs: list[str] | None = None,
                   variants: dict[str, Variant] | None = None,
                   errors: list[Finding] | None = None) -> dict[str, list[dict]]:
    """Render every overlay (and variant) once: {target name: documents}. With `errors`, a
    target that cannot be rendered is recorded there and skipped instead of raising."""
    variants = VARIANTS if variants is None else variants
    rendered: dict[str, list[dict]] = {}

    def attempt(name: str, path_of) -> None:
        try:
            rendered[name] = parse(render(path_of()))
        except (ManifestError, PinError) as e:
            if errors is None:
                raise
            errors.append(Finding(name, "kustomize", str(e)))

    for env in envs or overlays(root):
        attempt(env, lambda env=env: overlay_dir(env, root))
    with TemporaryDirectory(prefix="k8s-variant-") as tmp:
        for name, variant in variants.items():
            attempt(name, lambda name=name, variant=variant: compose_variant(
                variant, Path(tmp) / name, root))
    return rendered


def application_findings(root: Path = Path(".")) -> list[Finding]:
    """Argo CD Applications point at existing overlays and deploy into their namespaces."""
    findings: list[Finding] = []
    try:
        apps = parse(render(Path(root) / K8S_DIR / "argocd"))
    except ManifestError as e:
        return [Finding("argocd", "kustomize", str(e))]
    for app in apps:
        rid = resource_id(app)
        path = app["spec"]["source"]["path"]
        kustomization = Path(root) / path / "kustomization.yaml"
        if not kustomization.is_file():
            findings.append(Finding("argocd", rid, f"source.path {path} is not a kustomization"))
            continue
        namespace = (yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}).get(
            "namespace")
        if app["spec"]["destination"].get("namespace") != namespace:
            findings.append(Finding("argocd", rid, f"destination namespace "
                                    f"{app['spec']['destination'].get('namespace')} differs from "
                                    f"{path}'s namespace {namespace}"))
    return findings


def digest_pinned_before(env: str, root: Path = Path(".")) -> bool:
    """Whether the overlay's git history holds a digest pin (False outside a git checkout)."""
    try:
        return any(pin.digest for _sha, pin in pin_history(env, root))
    except PinError:
        return False


def pin_findings(root: Path = Path(".")) -> list[Finding]:
    findings = []
    for env in overlays(root):
        try:
            pin = read_pin(env, root)
        except PinError as e:
            findings.append(Finding(env, "kustomization.yaml images", str(e)))
            continue
        problem = pin_problem(env, pin.reference,
                              env in DIGEST_PINNED and digest_pinned_before(env, root))
        if problem:
            findings.append(Finding(env, "kustomization.yaml images", problem))
    return findings


def environment_of(target: str) -> str:
    """The environment (overlay) a rendered target deploys: a variant's base overlay."""
    return VARIANTS[target].overlay if target in VARIANTS else target


def validate_repository(root: Path = Path("."), progress=print) -> list[Finding]:
    """Render and check everything under k8s/; returns every finding (empty = valid)."""
    findings = pin_findings(root) + application_findings(root)
    rendered = render_targets(root, errors=findings)
    for target, docs in rendered.items():
        progress(f"rendered {target}: {len(docs)} resources")
        findings += policy_findings(target, docs)
    try:
        platform_docs = render_platform(root)
    except ManifestError as e:
        findings.append(Finding(PLATFORM_TARGET, "kustomize", str(e)))
        platform_docs = []
    progress(f"rendered {PLATFORM_TARGET}: {len(platform_docs)} resources")
    findings += platform_findings(platform_docs)
    gateways = [d for d in platform_docs if d.get("kind") == "Gateway"]
    findings += route_findings(rendered, gateways, environment_of)
    with_platform = {**rendered, PLATFORM_TARGET: platform_docs}
    findings += schema_findings(with_platform)
    findings += [Finding(*f) for f in crd_findings(with_platform, set(CRD_VALIDATED), root)]
    findings += application_schema_findings(root)
    return findings


def application_schema_findings(root: Path = Path(".")) -> list[Finding]:
    """The Argo CD Applications against the Application CRD."""
    try:
        apps = parse(render(Path(root) / K8S_DIR / "argocd"))
    except ManifestError:
        return []  # reported by application_findings
    return [Finding(*f) for f in crd_findings({"argocd": apps}, set(CRD_VALIDATED), root)]
