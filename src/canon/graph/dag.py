"""A small generic directed acyclic graph.

Nodes are hashable keys kept in insertion order (so every traversal is
deterministic); an edge ``a -> b`` means "a must happen before b".
``topological_order`` raises ``CycleError`` naming one cycle; callers turn
that into a user-facing error.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

N = TypeVar("N", bound=Hashable)


class CycleError(ValueError):
    def __init__(self, cycle: list[object]) -> None:
        super().__init__(" -> ".join(map(str, cycle)))
        self.cycle = cycle


class DAG(Generic[N]):
    def __init__(self) -> None:
        self._succ: dict[N, dict[N, None]] = {}
        self._pred: dict[N, dict[N, None]] = {}

    def add_node(self, node: N) -> None:
        if node not in self._succ:
            self._succ[node] = {}
            self._pred[node] = {}

    def add_edge(self, before: N, after: N) -> None:
        self.add_node(before)
        self.add_node(after)
        self._succ[before][after] = None
        self._pred[after][before] = None

    def __contains__(self, node: object) -> bool:
        return node in self._succ

    def __iter__(self) -> Iterator[N]:
        return iter(self._succ)

    def __len__(self) -> int:
        return len(self._succ)

    def nodes(self) -> list[N]:
        return list(self._succ)

    def edges(self) -> list[tuple[N, N]]:
        return [(a, b) for a, succ in self._succ.items() for b in succ]

    def successors(self, node: N) -> list[N]:
        return list(self._succ[node])

    def predecessors(self, node: N) -> list[N]:
        return list(self._pred[node])

    def topological_order(self) -> list[N]:
        """Kahn's algorithm; ties broken by insertion order."""
        indegree = {n: len(p) for n, p in self._pred.items()}
        ready = [n for n, d in indegree.items() if d == 0]
        order: list[N] = []
        i = 0
        while i < len(ready):
            node = ready[i]
            i += 1
            order.append(node)
            for nxt in self._succ[node]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) != len(self._succ):
            raise CycleError(self._find_cycle({n for n, d in indegree.items() if d > 0}))
        return order

    def _find_cycle(self, candidates: set[N]) -> list[object]:
        # Every node left with indegree > 0 has a predecessor that is also left,
        # so walking predecessors inside the candidates must revisit a node.
        start = next(n for n in self._succ if n in candidates)
        seen: dict[N, int] = {}
        path: list[N] = []
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(p for p in self._pred[node] if p in candidates)
        cycle = path[seen[node] :]
        cycle.reverse()
        return [*cycle, cycle[0]]

    def ancestors(self, nodes: Iterable[N]) -> set[N]:
        return self._closure(nodes, self._pred)

    def descendants(self, nodes: Iterable[N]) -> set[N]:
        return self._closure(nodes, self._succ)

    @staticmethod
    def _closure(nodes: Iterable[N], links: dict[N, dict[N, None]]) -> set[N]:
        seen: set[N] = set()
        stack = list(nodes)
        while stack:
            node = stack.pop()
            for nxt in links[node]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def subgraph(self, keep: Iterable[N]) -> DAG[N]:
        wanted = set(keep)
        sub: DAG[N] = DAG()
        for n in self._succ:
            if n in wanted:
                sub.add_node(n)
        for a, b in self.edges():
            if a in wanted and b in wanted:
                sub.add_edge(a, b)
        return sub
