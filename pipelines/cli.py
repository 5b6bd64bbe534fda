"""`python -m pipelines`: one command line for every stage, make target and workflow step.

Each area declares its commands next to its logic; this module only puts them together.
Errors are `PipelineError`s (pipelines/runtime/errors.py): click prints them and sets the exit
code."""

from __future__ import annotations

from loadtests import run as loadtest
from pipelines.ci import cli as ci
from pipelines.core import data_commands as core
from pipelines.core.cli import new_app
from pipelines.deploy import cli as deploy
from pipelines.monitor import cli as monitor
from pipelines.release import cli as release
from pipelines.stages import cli as stages

app = new_app("Moderation pipeline: stages, release, delivery, CI and monitoring.")
core.register(app)
stages.register(app)
release.register(app, deploy.rollout_app)
deploy.register(app)
ci.register(app)
monitor.register(app)
app.command("loadtest")(loadtest.command)
