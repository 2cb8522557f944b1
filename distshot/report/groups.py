"""Look-alike groups: records whose perceptual hashes are within a few bits of each other.

Leader clustering, not single linkage: single linkage joins a to c through b when a-b and
b-c are close, and over thousands of pages such chains merge pages that look nothing
alike. Here each group is the records within ``threshold`` bits of one leader hash:

1. exact hashes collapse first (a crawl repeats the same error page, parked domain or
   login wall many times), counted;
2. the most frequent hash not yet in a group leads the next one (ties: the one whose
   first record comes first); it takes every hash not yet in a group within
   ``threshold`` bits of it;
3. repeat until every hash is placed. Groups of one record are dropped.

The loop over leaders compares one hash with all the hashes still unplaced at once (numpy:
XOR, then a popcount), so a leader costs one pass over what remains; hashes that found a
group drop out of later passes. Deterministic: the same pairs give the same groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..core.perceptual import DEFAULT_DISTANCE


@dataclass(frozen=True)
class Group:
    id: int
    #: The leader's hash: every member is within the threshold of it.
    phash: str
    #: Record indexes; the first is the representative (the leader's first record), the
    #: others follow in index order.
    members: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "phash": self.phash,
            "size": len(self.members),
            "members": list(self.members),
        }


def look_alike_groups(
    pairs: Iterable[tuple[int, str]], threshold: int = DEFAULT_DISTANCE
) -> list[Group]:
    """Groups of two or more records from (record index, 16-hex pHash) pairs, largest
    first, with ids 0, 1, ... in that order. The order of ``pairs`` does not matter."""
    by_hash: dict[int, list[int]] = {}
    for index, phash in pairs:
        by_hash.setdefault(int(phash, 16), []).append(index)
    if not by_hash:
        return []
    for indexes in by_hash.values():
        indexes.sort()
    # Leader order: most records first, then the hash whose first record comes first.
    order = sorted(by_hash, key=lambda h: (-len(by_hash[h]), by_hash[h][0]))
    hashes = np.array(order, dtype=np.uint64)
    # Each loop takes the first hash still unplaced as the leader: with `hashes` kept in
    # leader order and placed hashes removed, that is always position 0.
    found: list[tuple[int, list[int]]] = []
    while hashes.size:
        leader = int(hashes[0])
        near = np.bitwise_count(hashes ^ hashes[0]) <= threshold
        if np.count_nonzero(near) == 1:
            members = [leader]
            hashes = hashes[1:]  # a view: a lone hash costs no copy
        else:
            members = [int(h) for h in hashes[near]]
            hashes = hashes[~near]
        first, *others = by_hash[leader]
        others += (i for h in members[1:] for i in by_hash[h])
        if others:
            found.append((leader, [first, *sorted(others)]))
    # Python's sort is stable: equal sizes keep leader order.
    found.sort(key=lambda item: -len(item[1]))
    return [
        Group(id=n, phash=f"{leader:016x}", members=tuple(records))
        for n, (leader, records) in enumerate(found)
    ]
