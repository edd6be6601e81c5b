"""canon's one error tree.

Every failure a user can act on is a ``CanonError``: a message, a hint, a
stable code and an exit code. Only the CLI entry point turns them into exit
codes; the core raises them and never prints.

    CanonError                       exit 2 unless stated
    ├── DeclarationError             canon.yaml / params.yaml problems (carries Diagnostics)
    ├── GraphError                   cycles, missing producers, two writers of one path
    ├── PathError                    a path leaves the workspace, enters .git, or is malformed
    ├── ProfileError                 unknown profile, unresolved ${...}
    ├── StateError                   .canon/ or canon.lock is damaged
    │   └── IntegrityError           an object does not hash to its digest
    ├── StalePlanError               a saved plan no longer matches the workspace
    ├── RemoteError                  a remote failed or refused a request (exit 4)
    │   ├── RemoteUnavailableError   down, timing out or answering 5xx after bounded retries
    │   ├── RemoteNotFoundError      no such remote declared / none chosen
    │   └── RemoteMissingError       objects the lock needs are on neither the cache nor the remote
    ├── ImageError                   an image, manifest or layer is malformed or not what it claims
    │   ├── UnsafeArchiveError       a layer/tarball entry would escape, collide or exceed a cap
    │   └── RegistryError            an OCI registry failed or refused a request (exit 4)
    ├── DataError                    a dataset is unknown, already declared, not pinned, malformed
    │   ├── SourceMissingError       its source is gone (a file, a prefix, a bucket) (exit 4)
    │   ├── SourceUnavailableError   down, refusing, changing, 5xx or too slow (exit 4)
    │   └── QueryError               a dataset's query, database or driver is wrong
    ├── ServeError                   the model server cannot load or verify its model
    ├── EnvironmentBuildError        a declared environment cannot be rebuilt (Python, pip)
    │   └── PackageIndexError        pip could not reach the package index (exit 4)
    ├── DeployError                  a deployment is unknown, not pinned or cannot be rendered
    │   └── DeployTargetError        kubectl, a cluster or a server failed or was silent (exit 4)
    ├── LockedError                  another canon process holds the repo lock (exit 3)
    ├── StageFailedError             a stage command failed (exit 1)
    └── InterruptedError_            the user interrupted (exit 130; 143 for SIGTERM)

Exit codes (the README's table says the same):

    0    done, or nothing to do
    1    a stage failed, or a check found something out of date / drifted
    2    the user's request, declarations or workspace state are wrong: fix and rerun
    3    another canon process holds the repository lock
    4    something outside answered badly or not at all: a remote, registry, data
         source or deploy target is down, refused, or lacks what was asked
    70   a bug in canon (--verbose shows the traceback)
    130  interrupted (SIGINT); 143 terminated (SIGTERM)

Foreign exceptions are translated at the edge: ``raise CanonError(...) from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a declaration, located as precisely as we can.

    ``file`` and ``line`` point at the YAML node at fault (1-based line), ``path``
    is the YAML path (``stages.train.deps[2]``), ``hint`` is a "did you mean" or
    a next step.
    """

    message: str
    file: str | None = None
    line: int | None = None
    path: str | None = None
    hint: str | None = None

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        parts = [p for p in (where, self.path) if p]
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.hint:
            text += f" — {self.hint}"
        return text


class CanonError(Exception):
    """Base of every error a user can act on."""

    code: str = "canon.error"
    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def details(self) -> Sequence[str]:
        """Extra lines shown under the message (e.g. every diagnostic)."""
        return ()


class DeclarationError(CanonError):
    code = "declaration.invalid"

    def __init__(
        self,
        message: str,
        diagnostics: Sequence[Diagnostic] = (),
        *,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.diagnostics = tuple(diagnostics)

    def details(self) -> Sequence[str]:
        return [d.render() for d in self.diagnostics]


class GraphError(CanonError):
    code = "graph.invalid"

    def __init__(self, message: str, problems: Sequence[str] = (), *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = tuple(problems)

    def details(self) -> Sequence[str]:
        return self.problems


class PathError(CanonError):
    code = "path.rejected"


class ProfileError(CanonError):
    code = "profile.invalid"


class StateError(CanonError):
    code = "state.damaged"


class IntegrityError(StateError):
    code = "state.integrity"


class StalePlanError(CanonError):
    code = "plan.stale"


class RemoteError(CanonError):
    code = "remote.failed"
    exit_code = 4


class RemoteConfigError(RemoteError):
    """The remote cannot even be opened as declared (its backend library is missing,
    its options are refused): the user's to fix, not the service's."""

    code = "remote.config"
    exit_code = 2


class RemoteUnavailableError(RemoteError):
    code = "remote.unavailable"


class RemoteNotFoundError(RemoteError):
    code = "remote.unknown"
    exit_code = 2


class RemoteMissingError(RemoteError):
    code = "remote.missing_objects"


class ImageError(CanonError):
    code = "image.invalid"


class UnsafeArchiveError(ImageError):
    code = "image.unsafe_archive"


class RegistryError(ImageError):
    code = "image.registry"
    exit_code = 4


class DataError(CanonError):
    code = "data.failed"


class SourceMissingError(DataError):
    code = "data.source_missing"
    exit_code = 4


class SourceUnavailableError(DataError):
    code = "data.source_unavailable"
    exit_code = 4


class QueryError(DataError):
    code = "data.query_failed"


class ServeError(CanonError):
    code = "serve.model"


class EnvironmentBuildError(CanonError):
    code = "environment.build_failed"


class PackageIndexError(EnvironmentBuildError):
    code = "environment.index_unavailable"
    exit_code = 4


class DeployError(CanonError):
    code = "deploy.failed"


class DeployTargetError(DeployError):
    code = "deploy.target_failed"
    exit_code = 4


class LockedError(CanonError):
    code = "repo.locked"
    exit_code = 3


class StageFailedError(CanonError):
    code = "stage.failed"
    exit_code = 1


class InterruptedError_(CanonError):
    code = "interrupted"
    exit_code = 130

    def __init__(self, message: str, *, hint: str | None = None, signal: int = 2) -> None:
        super().__init__(message, hint=hint)
        self.signal = signal
        self.exit_code = 128 + signal  # 130 for SIGINT, 143 for SIGTERM (the shell's convention)


class Terminated(KeyboardInterrupt):
    """What the CLI's SIGTERM handler raises in the main thread: unwinds like Ctrl-C
    (stages stopped, lock released, the apply recorded as interrupted), but remembers
    the signal so canon exits 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class ErrorReport:
    """A serialisable view of an error, for ``--json`` output."""

    code: str
    message: str
    hint: str | None
    details: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, err: CanonError) -> ErrorReport:
        return cls(err.code, err.message, err.hint, tuple(err.details()))
