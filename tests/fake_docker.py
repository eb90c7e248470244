"""A stand-in for the docker SDK's client, for tests that run pipeline jobs on a real
pool without an engine: each test's ``create`` does what the datum's container would
(read the inputs, write into the scratch bound at /pfs/out) and returns a finished
``Container``. Containers on a real engine: tests/e2e."""

from __future__ import annotations

from typing import Any


class Container:
    """A container that ran when it was created: its exit code, no output."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.id = f"c{id(self)}"

    def start(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        return {"StatusCode": self.code}

    def remove(self, **_options: Any) -> None:
        pass

    def kill(self) -> None:
        pass


class Containers:
    """``client.containers``: a test's subclass gives ``create``; ``keep`` records
    what it made so the low-level calls can find it."""

    def __init__(self) -> None:
        self.made: dict[str, Container] = {}

    def keep(self, container: Container) -> Container:
        self.made[container.id] = container
        return container

    def list(self, **_options: Any) -> list[Any]:
        return []


class Api:
    """``client.api``: the low-level calls the runner makes."""

    def __init__(self, containers: Containers) -> None:
        self.containers = containers

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        code = self.containers.made[container_id].code
        return {"State": {"Status": "exited", "ExitCode": code, "OOMKilled": False}}

    def logs(self, *_args: Any, **_options: Any) -> list[bytes]:
        return []

    def volumes(self, **_options: Any) -> dict[str, Any]:
        return {"Volumes": []}

    def remove_volume(self, name: str) -> None:
        pass


class Engine:
    """The client: ``containers`` and ``api``."""

    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.api = Api(containers)
