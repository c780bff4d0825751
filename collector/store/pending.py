"""The snapshots stored since the history was last derived, host by host.

Derived data (change events, candidate causes, fix checks, state spans) is extended at a run's
end with what was stored since, rather than derived again from every night of every host. A
host whose new snapshots all come after the ones already derived is extended from its last
derived snapshot; a host with a snapshot older than those (a backfilled capture, a re-import)
or without any derived snapshot yet is derived again from its first snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Pending:
    """What to derive: per host, the new snapshots to extend with, or the whole host again."""

    # host id -> ids of its new snapshots, each taken after every derived snapshot of the host.
    extend: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    # host ids to derive again from their first snapshot.
    rebuild: Set[int] = frozenset()

    @property
    def hosts(self) -> frozenset[int]:
        """Every host with something to derive."""
        return frozenset(self.extend) | frozenset(self.rebuild)

    def __bool__(self) -> bool:
        return bool(self.extend or self.rebuild)
