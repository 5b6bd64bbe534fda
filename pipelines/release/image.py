"""The service image: the Bento's own generated Dockerfile (what `bentoml containerize` builds),
built with BentoML's container API on Docker (the hosted runner) or Podman (here), and its facts
(digest, size, model version, a CycloneDX SBOM of its Python environment).

Without a registry, `--base local` builds the base image from Debian packages: an `mmdebstrap` of
the Debian release whose python3 is the Bento's Python version, with pip, imported into Podman
and put in place of the Dockerfile's first FROM (`podman build --from`). The build's `pip` and
`uv` reach the package index this machine's pip is configured for (`pip config list`): its files
are mounted read-only into the build, never copied into the image."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from pipelines.runtime.errors import PipelineError, UsageError
from service.bento import bentoml_home

# Podman as this kind of machine allows it: runc (crun refuses hybrid cgroups), cgroupfs (no
# systemd), ulimits below the hard limits (no CAP_SYS_RESOURCE to raise them).
PODMAN_CONF = Path(__file__).with_name("podman.conf")
LOCAL_BASE = "localhost/moderation-base"
# The Debian release whose python3 is the given Python version (the stand-in for the upstream
# python:<version>-slim base, which is Debian too).
DEBIAN_FOR_PYTHON = {"3.11": "bookworm", "3.13": "trixie"}
# What the base carries besides Debian's `apt` variant: the Dockerfile's first steps run apt-get,
# `pip install uv` and `uv venv --python <version>`.
BASE_PACKAGES = ("python3", "python3-pip", "ca-certificates")
BASE_HOOKS = (
    # upstream python images install with pip into the system Python; Debian forbids it (PEP 668)
    'rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED',
    'ln -sf python3 "$1"/usr/bin/python',
    # this machine's own certificate authorities (a TLS-intercepting egress proxy, if any)
    'for crt in /usr/local/share/ca-certificates/*.crt; do [ -e "$crt" ] && '
    'cp "$crt" "$1"/usr/local/share/ca-certificates/; done; chroot "$1" update-ca-certificates',
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
)


class ImageError(PipelineError):
    """The image could not be built or inspected."""


def podman_env() -> dict[str, str]:
    """The environment every podman call of the project runs with."""
    return {**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF)}


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise ImageError(f"{what}: `{shlex.join(cmd)}` exited {result.returncode}:\n"
                         f"{(result.stderr or result.stdout)[-3000:]}")
    return result


def podman(*args: str, what: str = "podman", timeout: float = 600) -> str:
    """Run podman with the project's settings; its stdout."""
    return _run(["podman", *args], what, env=podman_env(), timeout=timeout).stdout.strip()


def bento_spec(bento_tag: str) -> dict:
    """The `image:` section of the Bento's bento.yaml (base image, Python version, commands)."""
    os.environ.setdefault("BENTOML_HOME", str(bentoml_home()))
    import bentoml

    try:
        bento = bentoml.bentos.get(bento_tag)
    except bentoml.exceptions.NotFound:
        raise UsageError(f"no Bento {bento_tag} in {os.environ['BENTOML_HOME']}: "
                         "run `make bento` first") from None
    info = yaml.safe_load(Path(bento.path_of("bento.yaml")).read_text(encoding="utf-8"))
    return {"tag": str(bento.tag), "path": bento.path, **(info.get("image") or {}),
            "models": [m["tag"] for m in info.get("models", [])]}


def local_base(python_version: str) -> str:
    """A Debian base with this Python built by mmdebstrap and imported into Podman; reused while
    its recipe is unchanged (the tag carries the recipe's hash)."""
    release = DEBIAN_FOR_PYTHON.get(python_version)
    if release is None:
        raise UsageError(f"no Debian release known for Python {python_version} "
                         f"(known: {', '.join(DEBIAN_FOR_PYTHON)}); add it to DEBIAN_FOR_PYTHON")
    recipe = json.dumps([release, BASE_PACKAGES, BASE_HOOKS, sorted(
        p.name for p in Path("/usr/local/share/ca-certificates").glob("*.crt"))])
    tag = f"{LOCAL_BASE}:{release}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if subprocess.run(["podman", "image", "exists", tag], env=podman_env()).returncode == 0:
        return tag
    cmd = ["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(BASE_PACKAGES)}",
           *(f"--customize-hook={hook}" for hook in BASE_HOOKS), release, "-"]
    print(f"image: building the base {tag}: {shlex.join(cmd)} | podman import", flush=True)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as strap:
        imported = subprocess.run(["podman", "import", "--change", 'CMD ["python3"]', "-", tag],
                                  stdin=strap.stdout, capture_output=True, text=True,
                                  env=podman_env())
        strap.stdout.close()
        err = strap.stderr.read().decode(errors="replace")
    if strap.returncode != 0 or imported.returncode != 0:
        subprocess.run(["podman", "rmi", "-f", tag], env=podman_env(), capture_output=True)
        raise ImageError(f"building the base image {tag} failed (mmdebstrap exit "
                         f"{strap.returncode}, podman import exit {imported.returncode}):\n"
                         f"{err[-2000:]}{imported.stderr[-2000:]}")
    return tag


def _pip_config() -> dict[str, str]:
    """This machine's pip settings as `pip config list` shows them ({key: value}, env last)."""
    out = _run([sys.executable, "-m", "pip", "config", "list"], "reading the pip config").stdout
    config = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        config[key.split(".", 1)[-1]] = value.strip().strip("'\"")
    return config


def package_index_mounts(workdir: Path) -> list[str]:
    """`--volume` specs giving the build this machine's package index: a pip.conf and a uv.toml
    written from its pip config, and the local folders they name, all read-only."""
    config = _pip_config()
    pip_lines, uv_lines, folders = ["[global]"], [], set()
    for key in ("index-url", "extra-index-url", "find-links"):
        if key not in config:
            continue
        values = config[key].split()
        pip_lines.append(f"{key} = {' '.join(values)}")
        uv_lines.append(f"{key} = {json.dumps(values if key != 'index-url' else values[0])}")
        for value in values:
            if not value.startswith("http"):
                folder = Path(value.removeprefix("file://"))
                # a local simple index links its files relative to it (../../files/...)
                folders.add(str(folder.parent if folder.name == "simple" else folder))
    if "cert" in config:  # the base trusts this machine's CAs; pip reads them from its bundle
        pip_lines.append("cert = /etc/ssl/certs/ca-certificates.crt")
        uv_lines.append("system-certs = true")
    # pip picks the best match across all its indexes; uv's default stops at the first index
    # that has the name, which would refuse a pin only a later index of this machine holds
    uv_lines.append('index-strategy = "unsafe-best-match"')
    (workdir / "pip.conf").write_text("\n".join(pip_lines) + "\n", encoding="utf-8")
    (workdir / "uv.toml").write_text("\n".join(uv_lines) + "\n", encoding="utf-8")
    mounts = [f"{workdir / 'pip.conf'}:/etc/pip.conf:ro",
              f"{workdir / 'uv.toml'}:/etc/uv/uv.toml:ro"]
    mounts += [f"{folder}:{folder}:ro" for folder in sorted(folders) if Path(folder).is_dir()]
    return mounts


@dataclass
class ImageFacts:
    """What the docs and the promotion PR say about an image."""

    reference: str
    image_id: str
    digest: str  # the manifest digest the cluster pin uses (after a push: the registry's)
    size_bytes: int
    bento: str
    model_version: str
    build_s: float | None = None
    packages: int | None = None

    def markdown(self) -> str:
        rows = [("image", f"`{self.reference}`"), ("digest", f"`{self.digest}`"),
                ("size", f"{self.size_bytes / 1e6:.0f} MB"), ("Bento", f"`{self.bento}`"),
                ("model version", f"`{self.model_version}`")]
        if self.packages is not None:
            rows.append(("Python packages", f"{self.packages} (CycloneDX SBOM: sbom.cdx.json)"))
        if self.build_s is not None:
            rows.append(("build time", f"{self.build_s:.0f} s"))
        return "### Image\n\n| | |\n| --- | --- |\n" + "".join(
            f"| {k} | {v} |\n" for k, v in rows)


def build(bento_tag: str, reference: str, backend: str = "docker", base: str = "upstream",
          use_local_index: bool = False) -> float:
    """Build the Bento's image as `reference` with BentoML's container API (the same generated
    Dockerfile `bentoml containerize` builds). base: "upstream" (the Dockerfile's FROM), "local"
    (the Debian base above) or an image name. Returns the build's seconds."""
    os.environ.setdefault("BENTOML_HOME", str(bentoml_home()))
    import bentoml

    spec = bento_spec(bento_tag)
    options: dict = {}
    if backend == "podman":
        os.environ["CONTAINERS_CONF"] = str(PODMAN_CONF)
        options["layers"] = True  # reuse the apt and pip layers while their inputs are unchanged
    if base != "upstream":
        if backend != "podman":
            raise UsageError("--base other than upstream needs --backend podman "
                             "(podman build --from replaces the Dockerfile's first FROM)")
        options["from"] = local_base(str(spec["python_version"])) if base == "local" else base
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="image-index-") as workdir:
        if use_local_index:
            if backend != "podman":
                raise UsageError("--local-index needs --backend podman (build-time mounts)")
            options["volume"] = package_index_mounts(Path(workdir))
            options["network"] = "host"  # the build steps only: apt-get and the package index
        _remove_image(reference, backend)  # so that a failed build leaves no stale image
        try:
            bentoml.container.build(spec["tag"], backend=backend, image_tag=(reference,),
                                    **options)
        except Exception as err:  # BentoML raises its own and subprocess errors alike
            raise ImageError(f"building {reference} from {spec['tag']} with {backend} failed: "
                             f"{err}") from None
    # BentoML logs a failed build and returns: the image's presence is the verdict
    if not _image_exists(reference, backend):
        raise ImageError(f"building {reference} from {spec['tag']} with {backend} failed "
                         "(the builder's output is above)")
    return time.monotonic() - began


def _image_exists(reference: str, backend: str) -> bool:
    engine, env = ("podman", podman_env()) if backend == "podman" else ("docker", None)
    return subprocess.run([engine, "image", "inspect", reference], capture_output=True,
                          env=env).returncode == 0


def _remove_image(reference: str, backend: str) -> None:
    """Untag an earlier image of this name; its layers stay as the build cache."""
    if _image_exists(reference, backend):
        engine, env = ("podman", podman_env()) if backend == "podman" else ("docker", None)
        subprocess.run([engine, "image", "untag", reference], capture_output=True, env=env)


def facts(reference: str, bento_tag: str, backend: str = "podman",
          build_s: float | None = None, sbom_file: Path | None = None) -> ImageFacts:
    """The image's id, digest, size and the model version its Bento carries."""
    engine = ["podman"] if backend == "podman" else ["docker"]
    env = podman_env() if backend == "podman" else None
    info = json.loads(_run([*engine, "image", "inspect", reference], "inspecting the image",
                           env=env).stdout)[0]
    # after a push, the registry's digest of this repository; before, the local manifest's
    name = reference.rpartition(":")[0] if ":" in reference.rpartition("/")[2] else reference
    pushed = [d for d in info.get("RepoDigests") or [] if d.partition("@")[0] == name]
    digest = pushed[0].partition("@")[2] if pushed else info.get("Digest", "")
    spec = bento_spec(bento_tag)
    model = spec["models"][0] if spec["models"] else ":"
    packages = None
    if sbom_file is not None and sbom_file.is_file():
        packages = len(json.loads(sbom_file.read_text(encoding="utf-8")).get("components", []))
    return ImageFacts(reference, info["Id"], digest, int(info["Size"]), spec["tag"],
                      model.partition(":")[2], build_s, packages)


# cyclonedx-bom runs with the image's own Python against the image's environment (/app/.venv):
# its code is mounted read-only and appended to sys.path of the tool's process only, so the
# environment it inspects (a child process) sees nothing of it.
SBOM_SCRIPT = ("import sys; sys.path.append('/sbom-tool'); "
               "from cyclonedx_py._internal.cli import run; "
               "sys.exit(run(argv=['environment', '--no-validate', '--output-reproducible', "
               "'--of', 'JSON', '/app/.venv/bin/python']))")


def sbom(reference: str, out: Path, backend: str = "podman") -> Path:
    """A CycloneDX SBOM (JSON) of the image's Python environment, written to `out`."""
    import cyclonedx_py

    tool = Path(cyclonedx_py.__file__).resolve().parents[1]
    engine = "podman" if backend == "podman" else "docker"
    result = _run([engine, "run", "--rm", "--network", "none", "--read-only",
                   "--volume", f"{tool}:/sbom-tool:ro", "--entrypoint", "/app/.venv/bin/python",
                   reference, "-c", SBOM_SCRIPT], "writing the SBOM",
                  env=podman_env() if backend == "podman" else None, timeout=300)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.stdout, encoding="utf-8")
    return out


def write_facts(image: ImageFacts, out_dir: Path) -> None:
    """facts.json and facts.md (the PR body's section) under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "facts.json").write_text(json.dumps(asdict(image), indent=2) + "\n",
                                        encoding="utf-8")
    (out_dir / "facts.md").write_text(image.markdown(), encoding="utf-8")
