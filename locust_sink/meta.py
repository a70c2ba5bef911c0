"""Facts about the machine and the code under test that the run document records: the locustfile's git
commit and the host name. No Locust, no subprocess: safe to import anywhere."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Provenance:
    """Where a run's code and process come from (fields of the run document)."""

    locustfile: str | None  # as given to Locust (-f; may be a comma-separated list)
    git_commit: str | None  # HEAD of the git repository holding the (first) locustfile
    hostname: str


def provenance(locustfile: str | None) -> Provenance:
    """Read once per process: the commit does not change during a run."""
    return Provenance(locustfile, git_commit(locustfile.split(",")[0] if locustfile else None), hostname())


def hostname() -> str:
    """This machine's host name (the run document's `hostname`)."""
    return socket.gethostname()


def git_commit(path: str | None) -> str | None:
    """HEAD commit of the git repository holding `path` (read from .git, no subprocess); None if none."""
    if not path:
        return None
    try:
        here = Path(path).resolve()
        here = here if here.is_dir() else here.parent
        for folder in (here, *here.parents):
            dot_git = folder / ".git"
            if dot_git.is_file():  # worktree or submodule: "gitdir: <path>"
                text = dot_git.read_text().strip()
                if not text.startswith("gitdir:"):
                    return None
                git_dir = (folder / text.split(":", 1)[1].strip()).resolve()
            elif dot_git.is_dir():
                git_dir = dot_git
            else:
                continue
            return _resolve_head(git_dir)
    except (OSError, ValueError):
        return None
    return None


def _resolve_head(git_dir: Path) -> str | None:
    head = (git_dir / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    common = git_dir
    if (git_dir / "commondir").is_file():
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    for base in (git_dir, common):
        ref_file = base / ref
        if ref_file.is_file():
            return ref_file.read_text().strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None
