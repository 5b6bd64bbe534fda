"""A local stand-in for the GitHub REST API (the endpoints pipelines.release.github uses),
on 127.0.0.1.

It answers with GitHub's status codes and JSON shapes, including its errors: 401 Bad credentials,
404 Not Found, 422 Validation Failed for a missing field, an unknown head branch or a second open
pull request for the same head. Issues and pull requests share one number sequence, and listing
issues also lists pull requests (with a `pull_request` key), as on GitHub.

Its policies, as on github.com: an Actions token (`actions_tokens`) gets 403 "GitHub Actions is not
permitted to create or approve pull requests" from POST /pulls unless the repository and, for an
organisation's repository, the organisation allow it; settings and runner lists come 30 to a page
with `Link` headers; a classic token's scopes come back in `X-OAuth-Scopes`. `script()` makes the
next answers to one call a given sequence (429, 403 rate limits, 5xx) before the real one.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGitHub:
    """State of one repository plus the HTTP server that serves it."""

    def __init__(self, repo: str = "acme/moderation", token: str = "test-token",
                 branches: tuple[str, ...] = ("main",), git_dir: Path | None = None):
        self.repo, self.token = repo, token
        self.owner = repo.split("/")[0]
        self._branches = set(branches)
        # With a (bare) git repository, the branches are the ones pushed to it, as on GitHub.
        self.git_dir = git_dir
        self.items: list[dict[str, Any]] = []  # issues and pull requests, as GitHub numbers them
        self.comments: list[dict[str, Any]] = []
        self.variables: dict[str, str] = {}
        self.secrets: set[str] = set()
        self.statuses: list[dict[str, Any]] = []
        self.dispatches: list[dict[str, Any]] = []  # workflow_dispatch runs started
        # A new repository's defaults: read-only token, Actions may not create or approve PRs.
        self.workflow_permissions = {"default_workflow_permissions": "read",
                                     "can_approve_pull_request_reviews": False}
        # Tokens that may read the repository but not its administration settings.
        self.non_admin_tokens: set[str] = set()
        # GITHUB_TOKENs of workflow runs: refused PR creation unless the setting allows it.
        self.actions_tokens: set[str] = set()
        self.token_scopes: dict[str, str] = {}  # classic token -> its X-OAuth-Scopes
        self.owner_type = "User"  # or "Organization"
        self.org_variables: dict[str, str] = {}  # the organisation's, visible to this repository
        self.org_secrets: set[str] = set()
        self.org_workflow_permissions = {"default_workflow_permissions": "read",
                                         "can_approve_pull_request_reviews": False}
        self.environments: dict[str, dict[str, Any]] = {}  # name -> {"variables", "secrets"}
        self.actions_permissions = {"enabled": True, "allowed_actions": "all"}
        self.workflows: list[dict[str, Any]] = []  # {"name", "path", "state"}
        self.runners: list[list[str]] = []  # self-hosted runners' labels
        self.org_runners: list[list[str]] = []
        self.scripted: dict[tuple[str, str], list[tuple[int, dict[str, str], Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    @property
    def branches(self) -> set[str]:
        if self.git_dir is None:
            return self._branches
        out = subprocess.run(["git", "-C", str(self.git_dir), "for-each-ref", "--format",
                              "%(refname:lstrip=2)", "refs/heads/"], capture_output=True,
                             text=True, check=True, timeout=30).stdout
        return set(out.split())

    def script(self, method: str, path: str, *answers: tuple[int, dict[str, str], Any]) -> None:
        """Answer the next calls to METHOD PATH with these (status, headers, payload) first."""
        self.scripted.setdefault((method, path), []).extend(answers)

    def add_environment(self, name: str, variables: dict[str, str] | None = None,
                        secrets: set[str] | None = None) -> None:
        self.environments[name] = {"variables": dict(variables or {}),
                                   "secrets": set(secrets or ())}

    def pulls(self, state: str = "open") -> list[dict[str, Any]]:
        return [i for i in self.items if "head" in i and (state == "all" or i["state"] == state)]

    def issues(self) -> list[dict[str, Any]]:
        return [i for i in self.items if "head" not in i]

    # --- endpoint implementations: (status, payload) ---------------------------------------

    def get_repo(self) -> tuple[int, Any]:
        return 200, {"id": 1, "name": self.repo.split("/")[1], "full_name": self.repo,
                     "owner": {"login": self.owner, "type": self.owner_type},
                     "default_branch": "main", "private": False}

    def list_pulls(self, query: dict[str, str]) -> tuple[int, Any]:
        state, head = query.get("state", "open"), query.get("head")
        found = [p for p in self.pulls(state) if head is None or p["head"]["label"] == head]
        return 200, found

    def create_pull(self, body: dict[str, Any], token: str = "") -> tuple[int, Any]:
        if token in self.actions_tokens and not self._actions_may_create_prs():
            return 403, {"message": "GitHub Actions is not permitted to create or approve pull "
                         "requests.", "documentation_url": f"{DOCS}/pulls/pulls#create-a-pull-"
                         "request", "status": "403"}
        missing = [f for f in ("head", "base") if not body.get(f)]
        if missing or not body.get("title"):
            return 422, _invalid([{"resource": "PullRequest", "field": f, "code": "missing_field"}
                                  for f in missing or ["title"]])
        head = body["head"].split(":")[-1]
        if head not in self.branches:
            return 422, _invalid([{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        if body["base"] not in self.branches:
            return 422, _invalid([{"resource": "PullRequest", "field": "base", "code": "invalid"}])
        label = f"{self.owner}:{head}"
        if any(p["head"]["label"] == label for p in self.pulls()):
            return 422, _invalid([{"resource": "PullRequest", "code": "custom",
                                   "message": f"A pull request already exists for {label}."}])
        number = next(self._numbers)
        pull = {"id": 1000 + number, "number": number, "state": "open", "draft": False,
                "title": body["title"], "body": body.get("body"),
                "html_url": f"https://github.com/{self.repo}/pull/{number}",
                "head": {"ref": head, "label": label}, "base": {"ref": body["base"]},
                "user": {"login": "github-actions[bot]"},
                "created_at": _now(), "updated_at": _now()}
        self.items.append(pull)
        return 201, pull

    def update_pull(self, number: int, body: dict[str, Any]) -> tuple[int, Any]:
        pull = next((p for p in self.pulls("all") if p["number"] == number), None)
        if pull is None:
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        for key in ("title", "body", "state"):
            if key in body:
                pull[key] = body[key]
        pull["updated_at"] = _now()
        return 200, pull

    def create_issue(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not body.get("title"):
            return 422, _invalid([{"resource": "Issue", "field": "title",
                                   "code": "missing_field"}])
        number = next(self._numbers)
        issue = {"id": 2000 + number, "number": number, "state": "open", "title": body["title"],
                 "body": body.get("body"), "labels": [{"name": n} for n in body.get("labels", [])],
                 "html_url": f"https://github.com/{self.repo}/issues/{number}",
                 "created_at": _now(), "updated_at": _now()}
        self.items.append(issue)
        return 201, issue

    def list_issues(self, query: dict[str, str]) -> tuple[int, Any]:
        wanted = set(filter(None, query.get("labels", "").split(",")))
        found = []
        for item in self.items:
            names = {label["name"] for label in item.get("labels", [])}
            if item["state"] == query.get("state", "open") and wanted <= names:
                found.append({**item, "pull_request": {"url": item["html_url"]}}
                             if "head" in item else item)
        return 200, found

    def comment(self, number: int, body: dict[str, Any]) -> tuple[int, Any]:
        if not any(i["number"] == number for i in self.items):
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        comment = {"id": 3000 + len(self.comments), "body": body.get("body"),
                   "issue_number": number, "created_at": _now()}
        self.comments.append(comment)
        return 201, comment

    def _actions_may_create_prs(self) -> bool:
        org_allows = self.owner_type != "Organization" or \
            self.org_workflow_permissions["can_approve_pull_request_reviews"]
        return bool(org_allows and self.workflow_permissions["can_approve_pull_request_reviews"])

    def list_variables(self, values: dict[str, str], path: str,
                       query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        variables = [{"name": k, "value": v, "created_at": _now(), "updated_at": _now()}
                     for k, v in sorted(values.items())]
        return self._page(variables, "variables", path, query)

    def list_secrets(self, names: set[str], path: str,
                     query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        secrets = [{"name": k, "created_at": _now(), "updated_at": _now()}
                   for k in sorted(names)]
        return self._page(secrets, "secrets", path, query)

    def list_runners(self, runners: list[list[str]], path: str,
                     query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        items = [{"id": i + 1, "name": f"runner-{i + 1}", "os": "Linux", "status": "online",
                  "busy": False, "labels": [{"id": j + 1, "name": name, "type": "custom"}
                                            for j, name in enumerate(labels)]}
                 for i, labels in enumerate(runners)]
        return self._page(items, "runners", path, query)

    def _page(self, items: list[Any], key: str, path: str,
              query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """GitHub's pagination: per_page (default 30, at most 100), page, and a Link header."""
        per_page = min(int(query.get("per_page", 30)), 100)
        page, last = int(query.get("page", 1)), max(1, math.ceil(len(items) / per_page))
        links = [f'<{self.url}{path}?per_page={per_page}&page={n}>; rel="{rel}"'
                 for n, rel in ((page + 1, "next"), (last, "last")) if page < last]
        chunk = items[(page - 1) * per_page: page * per_page]
        return 200, {"total_count": len(items), key: chunk}, ({"Link": ", ".join(links)}
                                                             if links else {})

    def _admin(self, token: str, answer: Any) -> tuple[int, Any]:
        if token in self.non_admin_tokens:  # GitHub's answer without administration: read
            return 403, {"message": "Resource not accessible by integration",
                         "documentation_url": DOCS, "status": "403"}
        return 200, answer

    def get_workflow_permissions(self, token: str) -> tuple[int, Any]:
        return self._admin(token, dict(self.workflow_permissions))

    def list_workflows(self) -> tuple[int, Any]:
        workflows = [{"id": i + 1, "node_id": f"W{i + 1}", **w}
                     for i, w in enumerate(self.workflows)]
        return 200, {"total_count": len(workflows), "workflows": workflows}

    def environment(self, name: str, kind: str, path: str,
                    query: dict[str, str]) -> tuple[int, Any, dict[str, str]] | tuple[int, Any]:
        if name not in self.environments:
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        if kind == "variables":
            return self.list_variables(self.environments[name]["variables"], path, query)
        return self.list_secrets(self.environments[name]["secrets"], path, query)

    def route_org(self, path: str, query: dict[str, str], token: str) -> tuple[Any, ...]:
        if self.owner_type != "Organization" or not path.startswith(f"/orgs/{self.owner}/"):
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        rest = path[len(f"/orgs/{self.owner}"):]
        if rest == "/actions/permissions/workflow":
            return self._admin(token, dict(self.org_workflow_permissions))
        if rest == "/actions/runners":
            if token in self.non_admin_tokens:
                return self._admin(token, None)
            return self.list_runners(self.org_runners, path, query)
        return 404, {"message": "Not Found", "documentation_url": DOCS}

    def create_status(self, sha: str, body: dict[str, Any]) -> tuple[int, Any]:
        states = {"error", "failure", "pending", "success"}
        if body.get("state") not in states:
            return 422, _invalid([{"resource": "Status", "field": "state", "code": "invalid"}])
        if self.git_dir is not None and subprocess.run(
                ["git", "-C", str(self.git_dir), "cat-file", "-e", f"{sha}^{{commit}}"],
                capture_output=True, timeout=30).returncode != 0:
            return 422, _invalid([{"resource": "Status", "field": "sha", "code": "invalid",
                                   "message": f"No commit found for SHA: {sha}"}])
        status = {"id": 4000 + len(self.statuses), "sha": sha, "state": body["state"],
                  "context": body.get("context") or "default",
                  "description": body.get("description"), "target_url": body.get("target_url"),
                  "created_at": _now()}
        self.statuses.append(status)
        return 201, status

    def dispatch_workflow(self, workflow: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST .../actions/workflows/{file}/dispatches: 204; with a git repository, 422 for an
        unknown ref or a workflow without a `workflow_dispatch` trigger at that ref, as GitHub."""
        ref = body.get("ref")
        if not ref:
            return 422, _invalid([{"resource": "Dispatch", "field": "ref",
                                   "code": "missing_field"}])
        sha = None
        if self.git_dir is not None:
            if ref not in self.branches:
                return 422, {"message": f"No ref found for: {ref}", "documentation_url": DOCS}
            shown = subprocess.run(["git", "-C", str(self.git_dir), "show",
                                    f"{ref}:.github/workflows/{workflow}"],
                                   capture_output=True, text=True, timeout=30)
            if shown.returncode != 0:
                return 404, {"message": "Not Found", "documentation_url": DOCS}
            if "workflow_dispatch" not in shown.stdout:
                return 422, {"message": "Workflow does not have 'workflow_dispatch' trigger",
                             "documentation_url": DOCS}
            sha = subprocess.run(["git", "-C", str(self.git_dir), "rev-parse", ref],
                                 capture_output=True, text=True, check=True).stdout.strip()
        self.dispatches.append({"workflow": workflow, "ref": ref, "sha": sha,
                                "inputs": body.get("inputs") or {}})
        return 204, None

    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any],
              token: str = "") -> tuple[Any, ...]:
        """(status, payload) or (status, payload, extra headers)."""
        if self.scripted.get((method, path)):
            status, headers, payload = self.scripted[(method, path)].pop(0)
            return status, payload, headers
        if method == "GET" and path.startswith("/orgs/"):
            return self.route_org(path, query, token)
        prefix = f"/repos/{self.repo}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found", "documentation_url": DOCS}
        rest = path[len(prefix):]
        org = self.owner_type == "Organization"
        routes = {
            ("GET", ""): lambda: self.get_repo(),
            ("GET", "/pulls"): lambda: self.list_pulls(query),
            ("POST", "/pulls"): lambda: self.create_pull(body, token),
            ("GET", "/issues"): lambda: self.list_issues(query),
            ("POST", "/issues"): lambda: self.create_issue(body),
            ("GET", "/actions/variables"): lambda: self.list_variables(self.variables, path,
                                                                       query),
            ("GET", "/actions/secrets"): lambda: self.list_secrets(self.secrets, path, query),
            ("GET", "/actions/organization-variables"): lambda: self.list_variables(
                self.org_variables if org else {}, path, query),
            ("GET", "/actions/organization-secrets"): lambda: self.list_secrets(
                self.org_secrets if org else set(), path, query),
            ("GET", "/actions/permissions/workflow"): lambda: self.get_workflow_permissions(token),
            ("GET", "/actions/permissions"): lambda: self._admin(token,
                                                                 dict(self.actions_permissions)),
            ("GET", "/actions/workflows"): lambda: self.list_workflows(),
            ("GET", "/actions/runners"): lambda: self.list_runners(self.runners, path, query)
            if token not in self.non_admin_tokens else self._admin(token, None),
        }
        if (method, rest) in routes:
            return routes[(method, rest)]()
        if method == "GET" and (m := re.fullmatch(r"/environments/([^/]+)/(variables|secrets)",
                                                  rest)):
            return self.environment(m.group(1), m.group(2), path, query)
        if method == "PATCH" and (m := re.fullmatch(r"/pulls/(\d+)", rest)):
            return self.update_pull(int(m.group(1)), body)
        if method == "POST" and (m := re.fullmatch(r"/issues/(\d+)/comments", rest)):
            return self.comment(int(m.group(1)), body)
        if method == "POST" and (m := re.fullmatch(r"/statuses/([0-9a-f]{40})", rest)):
            return self.create_status(m.group(1), body)
        if method == "POST" and (m := re.fullmatch(r"/actions/workflows/([\w.-]+)/dispatches",
                                                   rest)):
            return self.dispatch_workflow(m.group(1), body)
        return 404, {"message": "Not Found", "documentation_url": DOCS}


def _invalid(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}


def _handler(state: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            state.requests.append((self.command, self.path))
            # GitHub accepts both schemes; PyGithub sends `token`, the gh CLI `Bearer`.
            auth = self.headers.get("Authorization") or ""
            token = auth.removeprefix("Bearer ").removeprefix("token ")
            known = {state.token, *state.non_admin_tokens, *state.actions_tokens,
                     *state.token_scopes}
            if token not in known:
                return self._send(401, {"message": "Bad credentials", "documentation_url": DOCS,
                                        "status": "401"})
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                return self._send(400, {"message": "Problems parsing JSON",
                                        "documentation_url": DOCS})
            with state._lock:
                status, payload, *extra = state.route(self.command, parts.path, query, body,
                                                      token)
            if token in state.token_scopes:
                extra = [{**(extra[0] if extra else {}),
                          "X-OAuth-Scopes": state.token_scopes[token]}]
            self._send(status, payload, extra[0] if extra else {})

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None
                  ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

    return Handler
