"""The lineage of a commit: what produced it and what it fed, by provenance."""

from __future__ import annotations

from pfs_volume.meta import MetadataStore
from pfs_volume.repos import RepoService


def lineage(
    repos: RepoService, store: MetadataStore, repo: str, commit_id: str
) -> tuple[list[str], list[str]]:
    """What produced a commit (every input commit, transitively) and what it fed
    (every output commit downstream, transitively), each as ``REPO@ID``. A merge
    commit holds what its merged-in heads held, so their provenance is its too.

    Raises:
        NotFound: no such repo or commit.
    """
    start = repos.get_commit(repo, commit_id)
    upstream: list[str] = []
    seen: set[str] = set()
    todo = list(start.provenance)
    merged, visited = list(start.merge_parents), set()
    while merged:  # merged-in heads, and the heads merged into those
        parent = repos.get_commit(repo, merged.pop())
        if parent.id not in visited:
            visited.add(parent.id)
            todo.extend(parent.provenance)
            merged.extend(parent.merge_parents)
    while todo:
        ref = todo.pop(0)
        if ref in seen:
            continue
        seen.add(ref)
        upstream.append(ref)
        r, c = ref.split("@", 1)
        found = store.get_commit(r, c)
        if found is not None:
            todo.extend(found.provenance)
    fed: dict[str, list[str]] = {}
    for record in store.list_repos():
        for commit in store.list_commits(record.name):
            for source in commit.provenance:
                fed.setdefault(source, []).append(f"{record.name}@{commit.id}")
    downstream: list[str] = []
    todo = [f"{repo}@{commit_id}"]
    seen = set()
    while todo:
        ref = todo.pop(0)
        for child in fed.get(ref, []):
            if child not in seen:
                seen.add(child)
                downstream.append(child)
                todo.append(child)
    return upstream, downstream
