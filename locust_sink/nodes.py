"""Which node of a Locust run this process is: its role and the id its documents carry.

Read from the runner each time: the runner is created after the sink, and a process has one role for its
whole life once it exists.
"""

from __future__ import annotations

from typing import Literal

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

Role = Literal["local", "master", "worker"]


def node_role(environment: Environment) -> Role:
    """`master`, `worker`, or `local` (standalone, and before a runner exists)."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "local"


def node_id(environment: Environment) -> str:
    """A worker's Locust client id (the `node` of its documents); `master` or `local` otherwise."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return str(runner.client_id)
    return node_role(environment)
