"""upload-artifact / download-artifact stand-ins: a zip through act's artifact server, v4 API.

Run on the act runner (stdlib only): `python3 artifacts.py upload|download`, configured by the
environment the action.yml files set (NAME, PATHS, IF_NO_FILES_FOUND, INCLUDE_HIDDEN; NAME,
DEST) and the one act gives every step (ACTIONS_RESULTS_URL, ACTIONS_RUNTIME_TOKEN).
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import urllib.request
import zipfile
from pathlib import Path

SERVICE = "twirp/github.actions.results.api.v1.ArtifactService"


def backend_ids() -> dict[str, str]:
    """The run and job ids act puts in the runtime token's scope (Actions.Results:<run>:<job>)."""
    payload = os.environ["ACTIONS_RUNTIME_TOKEN"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    scope = next(s for s in claims["scp"].split() if s.startswith("Actions.Results:"))
    _, run, job = scope.split(":")
    return {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job}


def call(method: str, body: dict) -> dict:
    url = f"{os.environ['ACTIONS_RESULTS_URL'].rstrip('/')}/{SERVICE}/{method}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json",
        "Authorization": f"Bearer {os.environ['ACTIONS_RUNTIME_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def collect(paths: list[Path], include_hidden: bool) -> tuple[Path, list[Path]]:
    """upload-artifact's rules: the root is the least common ancestor of the paths (a single
    directory is its own root); hidden files are left out unless asked for."""
    existing = [p for p in paths if p.exists()]
    if len(paths) == 1 and paths[0].is_dir():
        root = paths[0]
    else:
        root = Path(os.path.commonpath([str(p) for p in existing])) if existing else Path.cwd()
        if root.is_file():
            root = root.parent
    files = []
    for path in existing:
        for found in ([path] if path.is_file() else sorted(path.rglob("*"))):
            if found.is_file() and (include_hidden or not _hidden(found, root)):
                files.append(found)
    return root, files


def upload() -> None:
    name = os.environ["NAME"]
    workspace = Path(os.environ.get("GITHUB_WORKSPACE", "."))
    paths = [(workspace / line.strip()).resolve()
             for line in os.environ["PATHS"].splitlines() if line.strip()]
    root, files = collect(paths, os.environ.get("INCLUDE_HIDDEN", "false") == "true")
    if not files:
        message = f"No files were found with the provided path: {os.environ['PATHS']!r}"
        if os.environ.get("IF_NO_FILES_FOUND") == "error":
            sys.exit(f"::error::{message}")
        print(f"::warning::{message}. No artifacts will be uploaded.")
        return
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    ids = backend_ids()
    created = call("CreateArtifact", {**ids, "name": name, "version": 4})
    for comp, data in (("block", buffer.getvalue()), ("blocklist", b"")):
        request = urllib.request.Request(f"{created['signedUploadUrl']}&comp={comp}", data=data,
                                         method="PUT")
        urllib.request.urlopen(request, timeout=300).close()
    finalized = call("FinalizeArtifact", {**ids, "name": name,
                                          "size": str(len(buffer.getvalue()))})
    print(f"upload-artifact: {name} ({len(files)} files from {root}), id {finalized['artifactId']}")


def download() -> None:
    name, dest = os.environ["NAME"], Path(os.environ.get("DEST") or ".")
    ids = backend_ids()
    found = call("ListArtifacts", {**ids, "name_filter": name}).get("artifacts", [])
    if not found:
        sys.exit(f"::error::Unable to download artifact(s): Artifact not found for name: {name}")
    signed = call("GetSignedArtifactURL", {**ids, "name": name})["signedUrl"]
    with urllib.request.urlopen(signed, timeout=300) as response:
        data = response.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(dest)
        count = len(archive.namelist())
    print(f"download-artifact: {name} ({count} files) into {dest}")


if __name__ == "__main__":
    {"upload": upload, "download": download}[sys.argv[1]]()
