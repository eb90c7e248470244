"""The routes of the pfs HTTP API that the CLI calls: each one's HTTP method and path
template, here and nowhere else on the client side (a unit test holds them to the
OpenAPI document). Path parts are quoted once, in ``Route.path``."""

from __future__ import annotations

from pfs_volume.cli.connection import percent_encode


class Route:
    """One route of the API: its HTTP method and its path template (``{repo}``...)."""

    __slots__ = ("method", "template")

    def __init__(self, method: str, template: str) -> None:
        self.method = method
        self.template = template

    def __repr__(self) -> str:
        return f"Route({self.method!r}, {self.template!r})"

    def path(self, **parts: str) -> str:
        """The route's path with each ``{part}`` quoted so nothing in it changes the route."""
        return self.template.format(**{k: percent_encode(v) for k, v in parts.items()})


NODES = Route("GET", "/v1/nodes")
REPOS = Route("GET", "/v1/repos")
REPO_CREATE = Route("POST", "/v1/repos")
REPO = Route("GET", "/v1/repos/{repo}")
REPO_DELETE = Route("DELETE", "/v1/repos/{repo}")
REPO_EXPORT = Route("GET", "/v1/repos/{repo}/export")
IMPORT = Route("POST", "/v1/imports")
BRANCHES = Route("GET", "/v1/repos/{repo}/branches")
BRANCH_CREATE = Route("POST", "/v1/repos/{repo}/branches")
BRANCH_DELETE = Route("DELETE", "/v1/repos/{repo}/branches/{branch}")
BRANCH_RESET = Route("POST", "/v1/repos/{repo}/branches/{branch}/reset")
BRANCH_COMMIT = Route("POST", "/v1/repos/{repo}/branches/{branch}/commit")
BRANCH_REVERT = Route("POST", "/v1/repos/{repo}/branches/{branch}/revert")
BRANCH_MERGE = Route("POST", "/v1/repos/{repo}/branches/{branch}/merge")
FILE_PUT = Route("PUT", "/v1/repos/{repo}/branches/{branch}/files")
FILE_REMOVE = Route("DELETE", "/v1/repos/{repo}/branches/{branch}/files")
LOG = Route("GET", "/v1/repos/{repo}/log")
COMMIT = Route("GET", "/v1/repos/{repo}/commits/{ref}")
COMMIT_FILES = Route("GET", "/v1/repos/{repo}/commits/{ref}/files")
COMMIT_CONTENT = Route("GET", "/v1/repos/{repo}/commits/{ref}/content")
COMMIT_TAR = Route("GET", "/v1/repos/{repo}/commits/{ref}/tar")
COMMIT_WAIT = Route("GET", "/v1/repos/{repo}/commits/{ref}/wait")
COMMIT_PROVENANCE = Route("GET", "/v1/repos/{repo}/commits/{ref}/provenance")
GC = Route("POST", "/v1/repos/{repo}/gc")
DIFF = Route("GET", "/v1/repos/{repo}/diff")
PIPELINES = Route("GET", "/v1/pipelines")
PIPELINE_CREATE = Route("POST", "/v1/pipelines")
PIPELINE = Route("GET", "/v1/pipelines/{name}")
PIPELINE_UPDATE = Route("PUT", "/v1/pipelines/{name}")
PIPELINE_DELETE = Route("DELETE", "/v1/pipelines/{name}")
PIPELINE_STOP = Route("POST", "/v1/pipelines/{name}/stop")
PIPELINE_START = Route("POST", "/v1/pipelines/{name}/start")
JOBS = Route("GET", "/v1/jobs")
JOB = Route("GET", "/v1/jobs/{job_id}")
JOB_WAIT = Route("GET", "/v1/jobs/{job_id}/wait")
JOB_LOGS = Route("GET", "/v1/jobs/{job_id}/logs")
JOB_RERUN = Route("POST", "/v1/jobs/{job_id}/rerun")
DATUMS = Route("GET", "/v1/jobs/{job_id}/datums")
DATUM = Route("GET", "/v1/jobs/{job_id}/datums/{datum_id}")
MOUNTS = Route("GET", "/v1/mounts")
MOUNT_RELEASE = Route("DELETE", "/v1/mounts/{mount_id}")
DOCTOR = Route("GET", "/v1/doctor")
FSCK = Route("POST", "/v1/fsck")

ROUTES: tuple[Route, ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Route))
