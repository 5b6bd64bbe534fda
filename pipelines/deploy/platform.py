"""Checks of the cluster platform (k8s/platform) and of how the overlays attach to it: the Argo
Rollouts controller may change HTTPRoutes, the Gateway API plugin is registered, every route
attaches to a listener that admits it, and no two environments' routes compete for a request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from pipelines.deploy.crds import PLATFORM_DIR
from pipelines.deploy.kustomize import parse, render, resource_id
from pipelines.deploy.policy import GATEWAY_API_PLUGIN, Finding

PLATFORM_TARGET = "platform"
# The Argo Rollouts controller's identity in install.yaml (its ClusterRoleBinding's subject).
ROLLOUTS_SERVICE_ACCOUNT = ("argo-rollouts", "argo-rollouts")
# What the Gateway API plugin does to the HTTPRoute named in the Rollout.
PLUGIN_ACCESS = (("gateway.networking.k8s.io", "httproutes", ("get", "update", "patch")),)
REQUIRED_CRDS = (("gateway.networking.k8s.io", "HTTPRoute"), ("gateway.networking.k8s.io",
                 "Gateway"), ("argoproj.io", "Rollout"), ("argoproj.io", "AnalysisTemplate"))


def render_platform(root: Path = Path(".")) -> list[dict]:
    """The documents `kubectl kustomize k8s/platform` produces."""
    return parse(render(Path(root) / PLATFORM_DIR))


def _matches(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def allowed(docs: list[dict], account: tuple[str, str], group: str, resource: str,
            verb: str, namespace: str | None = None) -> bool:
    """Whether RBAC in `docs` lets ServiceAccount (namespace, name) do `verb` on `resource`
    (cluster-wide through a ClusterRoleBinding, or in `namespace` through a RoleBinding)."""
    # A ClusterRole is cluster-scoped: a namespace in its metadata (the plugin's docs give one)
    # means nothing.
    roles = {(d["kind"], (d.get("metadata") or {}).get("namespace") if d["kind"] == "Role"
              else None, d["metadata"]["name"]): d
             for d in docs if d.get("kind") in ("ClusterRole", "Role")}
    for binding in docs:
        kind = binding.get("kind")
        if kind not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        bound_ns = (binding.get("metadata") or {}).get("namespace")
        if kind == "RoleBinding" and bound_ns != namespace:
            continue
        if not any(s.get("kind") == "ServiceAccount" and
                   (s.get("namespace"), s.get("name")) == account
                   for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        role = roles.get((ref.get("kind"), None if ref.get("kind") == "ClusterRole" else bound_ns,
                          ref.get("name")))
        for rule in (role or {}).get("rules") or []:
            if (_matches(rule.get("apiGroups") or [], group)
                    and _matches(rule.get("resources") or [], resource)
                    and _matches(rule.get("verbs") or [], verb)):
                return True
    return False


def _registered_plugins(docs: list[dict]) -> list[dict]:
    config = next((d for d in docs if d.get("kind") == "ConfigMap" and
                   d["metadata"]["name"] == "argo-rollouts-config" and
                   d["metadata"].get("namespace") == ROLLOUTS_SERVICE_ACCOUNT[0]), None)
    text = ((config or {}).get("data") or {}).get("trafficRouterPlugins", "")
    return yaml.safe_load(text) or [] if text else []


def platform_findings(docs: list[dict]) -> Iterator[Finding]:
    """What the rendered platform lacks for a Gateway API canary."""
    for group, resource, verbs in PLUGIN_ACCESS:
        for verb in verbs:
            if not allowed(docs, ROLLOUTS_SERVICE_ACCOUNT, group, resource, verb):
                yield Finding(PLATFORM_TARGET, "RBAC", (
                    f"ServiceAccount {'/'.join(ROLLOUTS_SERVICE_ACCOUNT)} may not {verb} "
                    f"{resource}.{group}: the Gateway API plugin cannot set the canary weights "
                    "(see argo-rollouts/gatewayapi-plugin-rbac.yaml)"))
    if GATEWAY_API_PLUGIN not in {p.get("name") for p in _registered_plugins(docs)}:
        yield Finding(PLATFORM_TARGET, "ConfigMap/argo-rollouts-config", (
            f"trafficRouterPlugins does not register {GATEWAY_API_PLUGIN} (the Rollouts' "
            "trafficRouting.plugins would fail)"))
    installed = {(d["spec"]["group"], d["spec"]["names"]["kind"]) for d in docs
                 if d.get("kind") == "CustomResourceDefinition"}
    for group, kind in REQUIRED_CRDS:
        if (group, kind) not in installed:
            yield Finding(PLATFORM_TARGET, "CustomResourceDefinition",
                          f"no CRD for {group} {kind}: `kubectl apply -k` of an overlay fails")


# ---------------------------------------------------------------------------------------------
# Routes: attachment to the Gateway's listeners and collisions between environments


def _hostname_matches(pattern: str | None, hostname: str) -> bool:
    """Gateway API listener/route hostname intersection (a `*.` wildcard is one or more labels)."""
    if not pattern:
        return True
    if pattern.startswith("*."):
        return hostname.endswith(pattern[1:]) and len(hostname) > len(pattern) - 1
    return pattern == hostname


def _listeners(gateways: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(g["metadata"].get("namespace", "default"), g["metadata"]["name"], listener["name"]):
            listener for g in gateways for listener in g["spec"].get("listeners", [])}


def route_keys(route: dict, gateways: list[dict]) -> list[tuple]:
    """(gateway namespace, gateway, listener, hostname, path match) of every request a route
    claims, listeners resolved as the Gateway would attach them."""
    namespace = route["metadata"].get("namespace", "default")
    listeners = _listeners(gateways)
    keys = []
    for ref in route["spec"].get("parentRefs", []):
        gateway = (ref.get("namespace", namespace), ref["name"])
        names = [ref["sectionName"]] if ref.get("sectionName") else [
            n for (ns, g, n) in listeners if (ns, g) == gateway]
        for listener_name in names:
            listener = listeners.get((*gateway, listener_name), {})
            hostnames = route["spec"].get("hostnames") or [listener.get("hostname") or "*"]
            for hostname in hostnames:
                for rule in route["spec"].get("rules", []):
                    for match in rule.get("matches") or [{}]:
                        path = match.get("path") or {"type": "PathPrefix", "value": "/"}
                        keys.append((*gateway, listener_name, hostname,
                                     path.get("type", "PathPrefix"), path.get("value", "/")))
    return keys


def attachment_problems(route: dict, gateways: list[dict]) -> Iterator[str]:
    """Why a route would not be accepted by the listener it names."""
    namespace = route["metadata"].get("namespace", "default")
    listeners = _listeners(gateways)
    for ref in route["spec"].get("parentRefs", []):
        gateway = (ref.get("namespace", namespace), ref["name"])
        if not ref.get("sectionName"):
            yield (f"parentRef {'/'.join(gateway)} names no sectionName: the route attaches to "
                   "every listener, every environment's included")
            continue
        listener = listeners.get((*gateway, ref["sectionName"]))
        if listener is None:
            yield f"parentRef {'/'.join(gateway)} has no listener {ref['sectionName']!r}"
            continue
        admitted = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
        selector = ((admitted.get("selector") or {}).get("matchLabels") or {})
        if admitted.get("from") != "Selector" or selector != {
                "kubernetes.io/metadata.name": namespace}:
            yield (f"listener {ref['sectionName']} does not admit exactly namespace {namespace} "
                   f"(allowedRoutes.namespaces {admitted})")
        for hostname in route["spec"].get("hostnames") or []:
            if not _hostname_matches(listener.get("hostname"), hostname):
                yield (f"hostname {hostname} does not match listener {ref['sectionName']}'s "
                       f"{listener.get('hostname')}")
        if not route["spec"].get("hostnames"):
            yield "no hostnames: the route would answer for every host of its listener"


def route_findings(rendered: dict[str, list[dict]], gateways: list[dict],
                   environment_of=lambda target: target) -> list[Finding]:
    """Attachment problems of every HTTPRoute, and claims that two routes of different
    environments (or two routes of one target) share: the Gateway would send those requests to
    the oldest route only."""
    findings: list[Finding] = []
    claims: dict[tuple, set[tuple[str, str, str]]] = {}
    for target, docs in rendered.items():
        for route in (d for d in docs if d.get("kind") == "HTTPRoute"):
            rid = resource_id(route)
            findings += [Finding(target, rid, p) for p in attachment_problems(route, gateways)]
            for key in route_keys(route, gateways):
                claims.setdefault(key, set()).add((environment_of(target), target, rid))
    for key, owners in sorted(claims.items()):
        environments = {env for env, _, _ in owners}
        per_target = {}
        for _, target, rid in owners:
            per_target.setdefault(target, set()).add(rid)
        clash = len(environments) > 1 or any(len(r) > 1 for r in per_target.values())
        if clash:
            who = ", ".join(sorted(f"{t}:{r}" for _, t, r in owners))
            findings.append(Finding("routes", "HTTPRoute", (
                f"{who} all claim {key[3]} {key[4]} {key[5]} on {key[0]}/{key[1]} listener "
                f"{key[2]}: the Gateway sends these requests to one route only")))
    return findings
