"""Versions kept by DVC: resolving data.dvc, reading a past version of a tracked folder, the
default remote and its objects.

Apart from data.py because DVC is a heavy import the service must not pay for (and its image
does not install)."""

from __future__ import annotations

import json
from pathlib import Path

from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.tree import Tree

from pipelines.core.data import DATA_POINTER, DataError, dataset_hash
from pipelines.core.tools import CommandError, dvc, run


def default_remote(root: Path | str = ".") -> tuple[str | None, str | None]:
    """Name and URL of the default DVC remote (a local remote's URL is an absolute path)."""
    with Repo(str(root)) as repo:
        name = repo.config["core"].get("remote")
        remote = repo.config["remote"].get(name) if name else None
        return name, (remote or {}).get("url")


def in_repo_remote(root: Path | str = ".") -> Path | None:
    """The default DVC remote's folder (absolute) when it lies inside the repository: the demo
    remote, whose objects are committed with the pointers that name them."""
    root = Path(root).resolve()
    _, url = default_remote(root)
    if not url or "://" in url:
        return None
    path = Path(url).resolve()
    return path if path.is_relative_to(root) else None


def _object_dbs(repo: Repo) -> list:
    """Where DVC keeps content-addressed objects: the local cache, then the default remote."""
    return [repo.cache.local] + ([repo.cloud.get_remote_odb()]
                                 if repo.config["core"].get("remote") else [])


def _load_dir(odbs: list, dir_md5: str) -> Tree | None:
    for odb in odbs:
        try:
            return Tree.load(odb, HashInfo("md5", f"{dir_md5}.dir"))
        except FileNotFoundError:
            continue
    return None


def read_tracked_file(dir_md5: str, relpath: str, root: Path | str = ".") -> bytes:
    """One file of a version of a DVC-tracked directory (named by its md5), read from the DVC
    cache or the default remote without checking anything out."""
    try:
        with Repo(str(root)) as repo:
            odbs = _object_dbs(repo)
            tree = _load_dir(odbs, dir_md5)
            if tree is None:
                raise DataError(f"directory version {dir_md5} is in neither the DVC cache nor "
                                "the remote; `dvc fetch` it from the commit that produced it")
            entry = tree.get(tuple(relpath.split("/")))
            if entry is None:
                files = sorted("/".join(key) for key, _, _ in tree)
                raise DataError(f"directory version {dir_md5} has no {relpath} (it has {files})")
            for odb in odbs:
                obj = odb.get(entry[1].value)
                if obj.fs.exists(obj.path):
                    return obj.fs.read_bytes(obj.path)
    except DvcException as e:
        raise DataError(f"cannot read {relpath} of directory version {dir_md5}: {e}") from e
    raise DataError(f"{relpath} of directory version {dir_md5} is missing from the DVC cache "
                    "and remote")


def remote_objects(pointer: Path | str, root: Path | str = ".") -> list[Path]:
    """The default remote's files holding the directory a *.dvc pointer tracks: its manifest and
    every file in it (the in-repo remote commits them next to the pointer)."""
    with Repo(str(root)) as repo:
        remote = repo.cloud.get_remote_odb()
        dir_hash = repo.stage.load_one(str(pointer)).outs[0].hash_info
        tree = Tree.load(remote, dir_hash)
        return [Path(remote.oid_to_path(oid))
                for oid in (dir_hash.value, *(hash_info.value for _, _, hash_info in tree))]


def unsaved_changes(pointer: Path | str = DATA_POINTER) -> list[str]:
    """The outputs of a .dvc pointer whose files were edited since `dvc add` (DVC's status)."""
    try:
        stages = json.loads(run(["dvc", "status", "--json", str(pointer)], check=False) or "{}")
    except json.JSONDecodeError:
        return []
    return [out for changes in stages.get(str(pointer), []) if isinstance(changes, dict)
            for out, state in (changes.get("changed outs") or {}).items() if state == "modified"]


def unsaved_changes_error(pointer: Path | str, digest: str, outs: list[str]) -> DataError:
    where = ", ".join(f"{out}/" for out in outs)
    return DataError(
        f"{pointer}: {where} has changes that are not saved as a data version: the files differ "
        f"from version {digest} that {pointer} names, and DVC will not overwrite them.\n"
        f"Fix: either make your edit the new data version with `dvc add {outs[0]}` (then commit "
        f"{pointer}), or discard it with `dvc checkout --force {pointer}` (or "
        f"`git checkout -- {pointer}` if you changed the pointer)."
    )


def pull_data(pointer: Path | str = DATA_POINTER) -> str:
    """Make the data directory match the pointer, from the cache or the DVC remote."""
    digest = dataset_hash(pointer)
    try:
        dvc("pull", "--quiet", str(pointer))
    except CommandError as e:
        edited = unsaved_changes(pointer)
        if edited:
            raise unsaved_changes_error(pointer, digest, edited) from None
        remote = run(["dvc", "remote", "list"], check=False).strip()
        raise DataError(
            f"{pointer}: cannot resolve data version {digest}: it is neither in the local cache "
            f"nor in the DVC remote ({remote or 'no remote configured'}).\n"
            "Fix: on the machine that has the data run `dvc push`, or check out a data.dvc "
            "whose version was pushed (`git log -- data.dvc`).\n"
            f"dvc said: {e.message}"
        ) from None
    return digest


