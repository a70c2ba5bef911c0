"""Which node of a Locust run this process is: `local` (standalone), `master`, or a worker's client id."""

from __future__ import annotations

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner


def node_role(environment: Environment) -> str:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "local"


def node_id(environment: Environment) -> str:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return str(runner.client_id)
    return node_role(environment)
