"""What an Argo CD sync does to one live object, reduced to the parts the Applications' settings
change: with RespectIgnoreDifferences the ignored fields of the desired manifest take their live
values first; then the manifest is applied client-side (a JSON merge patch for a custom resource:
lists are replaced whole) and the API server fills the CRD's schema defaults."""

from __future__ import annotations

import copy

import jsonpointer

from pipelines.deploy.crds import crd_documents
from tests.k8s.conftest import REPO


def ignored_pointers(app: dict, doc: dict) -> list[str]:
    """The jsonPointers the Application ignores on this object (group, kind, name match)."""
    group = doc["apiVersion"].rpartition("/")[0]
    pointers = []
    for rule in app["spec"].get("ignoreDifferences", []):
        if rule.get("group", "") == group and rule["kind"] == doc["kind"] and \
                rule.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]:
            pointers += rule.get("jsonPointers", [])
    return pointers


def merge_patch(target, patch):
    """RFC 7386: objects merge key by key, everything else (lists included) is replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def schema_of(doc: dict) -> dict:
    group, _, version = doc["apiVersion"].rpartition("/")
    for _, crd in crd_documents(REPO):
        if (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, doc["kind"]):
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    return v["schema"]["openAPIV3Schema"]
    raise LookupError(f"no CRD for {doc['apiVersion']} {doc['kind']}")


def apply_defaults(node, schema: dict):
    """Structural-schema defaulting, as the API server does it on write."""
    if isinstance(node, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in node and "default" in sub:
                node[name] = copy.deepcopy(sub["default"])
            if name in node:
                apply_defaults(node[name], sub)
    elif isinstance(node, list) and "items" in schema:
        for item in node:
            apply_defaults(item, schema["items"])
    return node


def sync(app: dict, live: dict, desired: dict) -> dict:
    """The live object after Argo CD syncs `desired` (from git) over it under `app`'s options."""
    desired = copy.deepcopy(desired)
    if "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"].get("syncOptions", []):
        for pointer in ignored_pointers(app, desired):
            value = jsonpointer.resolve_pointer(live, pointer, None)
            if value is not None:
                jsonpointer.set_pointer(desired, pointer, value)
    return apply_defaults(merge_patch(live, desired), schema_of(desired))
