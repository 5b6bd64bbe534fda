"""Schema validation of custom resources against their CRDs, the way the API server checks them:
each CRD version's structural openAPIV3Schema as JSON Schema, unknown fields rejected wherever the
schema does not preserve them. The CRDs are those the platform kustomization (k8s/platform)
installs, plus the vendored ones of controllers installed from their own releases (k8s/crds)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import yaml

from pipelines.deploy.kustomize import ManifestError, parse, render, resource_id

CRD_DIR = Path("k8s/crds")
PLATFORM_DIR = Path("k8s/platform")
# Fields the API server validates itself (ObjectMeta), whatever the CRD says about them.
SERVER_VALIDATED = {"metadata"}


def _loader():
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def crd_documents(root: Path = Path(".")) -> list[tuple[str, dict]]:
    """(source, CRD) for every CRD the platform kustomization installs and every vendored one."""
    found = [(str(path.relative_to(root)), doc)
             for path in sorted((Path(root) / CRD_DIR).rglob("*.yaml"))
             for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_loader()) if doc]
    found += [(f"kubectl kustomize {PLATFORM_DIR}", doc)
              for doc in parse(render(Path(root) / PLATFORM_DIR))]
    return [(source, doc) for source, doc in found if doc.get("kind") == "CustomResourceDefinition"]


@cache
def crd_schemas(root: Path) -> dict[tuple[str, str, str], dict]:
    """{(group, version, kind): JSON Schema} of every served version of every CRD."""
    schemas: dict[tuple[str, str, str], dict] = {}
    sources: dict[tuple[str, str, str], str] = {}
    for source, doc in crd_documents(root):
        spec = doc["spec"]
        for version in spec["versions"]:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if version.get("served", True) and schema:
                key = (spec["group"], version["name"], spec["names"]["kind"])
                if key in sources:
                    # Two copies of one CRD: which one the cluster runs would be a guess.
                    raise ManifestError(f"{'/'.join(key)} is defined by both {sources[key]} and "
                                        f"{source}: keep only the one the cluster installs")
                sources[key] = source
                schemas[key] = to_json_schema(schema, root=True)
    return schemas


def to_json_schema(node: dict, root: bool = False) -> dict:
    """One structural-schema node as JSON Schema (draft 2020-12)."""
    out = {k: v for k, v in node.items()
           if k not in ("properties", "items", "additionalProperties", "nullable", "type",
                        "allOf", "anyOf", "oneOf", "not", "format")}
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    if "properties" in node:
        out["properties"] = {
            name: ({} if root and name in SERVER_VALIDATED else to_json_schema(sub))
            for name, sub in node["properties"].items()}
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out.setdefault("allOf", []).append(
                {key: [to_json_schema(sub) for sub in node[key]]})
    if "not" in node:
        out["not"] = to_json_schema(node["not"])
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = to_json_schema(additional)
    elif additional is not None:
        out["additionalProperties"] = additional
    elif node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        # Structural schemas prune unknown fields; strict field validation rejects them.
        out["additionalProperties"] = False
    return out


def _path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) or "(root)"


def _message(error) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = sorted(error.schema.get("properties") or {})
        extra = sorted(set(error.instance) - set(known))
        hint = f" (known: {', '.join(known)})" if len(known) <= 40 else ""
        return f"unknown field(s) {', '.join(map(repr, extra))}{hint}"
    return error.message


def validate_custom_resource(doc: dict, root: Path = Path(".")) -> list[str] | None:
    """Problems of one custom resource ('path: message'), or None when no CRD (k8s/platform,
    k8s/crds) has its group, version and kind."""
    from jsonschema import Draft202012Validator

    api_version = str(doc.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    schema = crd_schemas(Path(root).resolve()).get((group, version, str(doc.get("kind"))))
    if schema is None:
        return None
    validator = Draft202012Validator(schema)
    return [f"{_path(e)}: {_message(e)}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]


def crd_findings(rendered: dict[str, list[dict]], custom: set[tuple[str, str]],
                 root: Path = Path(".")) -> Iterator[tuple[str, str, str]]:
    """(target, resource, problem) for every custom resource of the given (group, kind)s."""
    for target, docs in rendered.items():
        for doc in docs:
            group = str(doc.get("apiVersion", "")).rpartition("/")[0]
            if (group, doc.get("kind")) not in custom:
                continue
            problems = validate_custom_resource(doc, root)
            if problems is None:
                yield target, resource_id(doc), (
                    f"no CRD in {PLATFORM_DIR} or {CRD_DIR} for {doc.get('apiVersion')} "
                    f"{doc.get('kind')}")
                continue
            for problem in problems:
                yield target, resource_id(doc), f"CRD schema: {problem}"
