"""The paper's two synthetic tasks, as seeded tensor data sets.

Both tasks give a *conditioning* sequence ``x`` (what to look for) and a *content* sequence ``y`` (what the
answer is read from), of one length ``n`` (the shorter one padded with ``PAD``).

- **Sorting by an arbitrary order**: ``y`` is 10 symbols drawn with replacement from a 10-symbol alphabet;
  ``x`` is a reference ordering (a permutation of the alphabet) drawn from a fixed pool of ``orderings``
  permutations (5; with 2 the task is easier). Target: for each ``y_i``, its position in ``y`` sorted by ``x``'s
  order (a stable sort: equal symbols keep their order in ``y``). The answer depends on every symbol of ``y`` and
  on ``x``, so it is not a per-token lookup: the first version of this study asked for ``y_i``'s index in ``x``,
  which a model can read off one matching key, and every attention block solved it. Metric: per-token accuracy.
- **Sequence retrieval**: ``y`` is a reference of 10 symbols; ``x`` is a query of 3 symbols copied from a
  random contiguous position of ``y`` (and found nowhere else in it), padded to 10. Target: the start index.
  Metric: accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALPHABET = 10
PAD = ALPHABET  # token id of padding
LENGTH = 10


@dataclass
class TaskData:
    """``x``, ``y``: ``(N, n)`` long tokens; ``target``: ``(N, n)`` per-token labels (sorting) or ``(N,)``
    start indices (retrieval)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    per_token: bool
    pool: torch.Tensor | None = None  # sorting: the orderings x is drawn from

    def __len__(self) -> int:
        return self.x.shape[0]


def sorting(count: int, orderings: int, seed: int, pool_seed: int = 1234) -> TaskData:
    """Sorting by an arbitrary order; the ordering pool depends on ``pool_seed`` only (shared by splits)."""
    pool_gen = torch.Generator().manual_seed(pool_seed + orderings)
    pool = torch.stack([torch.randperm(ALPHABET, generator=pool_gen) for _ in range(orderings)])
    gen = torch.Generator().manual_seed(seed)
    x = pool[torch.randint(orderings, (count,), generator=gen)]
    y = torch.randint(ALPHABET, (count, LENGTH), generator=gen)
    rank = torch.argsort(x, dim=1)  # rank[b, s] = index of symbol s in ordering x[b]
    target = sorted_positions(torch.gather(rank, 1, y))
    return TaskData(f"sorting-{orderings}", x, y, target, per_token=True, pool=pool)


def sorted_positions(ranks: torch.Tensor) -> torch.Tensor:
    """``(N, n)`` ranks -> each element's position after a stable sort by rank: ``#{k: r_k < r_i} + #{k < i:
    r_k = r_i}``."""
    return torch.argsort(torch.argsort(ranks, dim=1, stable=True), dim=1)


def retrieval(count: int, seed: int, query_length: int = 3) -> TaskData:
    gen = torch.Generator().manual_seed(seed)
    xs, ys, starts = [], [], []
    while len(xs) < count:
        y = torch.randint(ALPHABET, (LENGTH,), generator=gen)
        start = int(torch.randint(LENGTH - query_length + 1, (1,), generator=gen))
        query = y[start : start + query_length]
        windows = y.unfold(0, query_length, 1)
        if int((windows == query).all(dim=1).sum()) != 1:  # ambiguous: the query occurs twice
            continue
        xs.append(torch.cat([query, torch.full((LENGTH - query_length,), PAD)]))
        ys.append(y)
        starts.append(start)
    return TaskData("retrieval", torch.stack(xs), torch.stack(ys), torch.tensor(starts), per_token=False)


def blind_floor(data: TaskData) -> float:
    """The best accuracy of a predictor that sees ``y`` but not ``x``: the floor a model scores when nothing
    reaches it from the conditioning sequence.

    An expectation over ``x`` given each instance's ``y``, not a score on the drawn ``x``. Sorting: ``x`` is one
    of the pool's orderings, equally likely, so the best blind answer per token is the most frequent target over
    the pool, right with probability ``max count / pool size``. Retrieval: the query is a window of ``y`` that
    occurs once in it, so the start is uniform over ``y``'s unique windows and the best blind guess is right with
    probability ``1 / #unique windows``.
    """
    if data.pool is not None:
        ranks = torch.argsort(data.pool, dim=1)  # (P, alphabet)
        candidates = torch.stack([sorted_positions(rank[data.y]) for rank in ranks])  # (P, N, n)
        counts = torch.nn.functional.one_hot(candidates, LENGTH).sum(0)  # (N, n, n): votes per answer
        return float(counts.max(-1).values.float().mean() / len(data.pool))
    query_length = int((data.x[0] != PAD).sum())
    total = 0.0
    for y in data.y:
        windows = y.unfold(0, query_length, 1)
        unique = sum(int((windows == w).all(dim=1).sum()) == 1 for w in windows)
        total += 1.0 / unique
    return total / len(data)


def make_task(name: str, count: int, seed: int) -> TaskData:
    if name == "sorting-5":
        return sorting(count, 5, seed)
    if name == "sorting-2":
        return sorting(count, 2, seed)
    if name == "retrieval":
        return retrieval(count, seed)
    raise ValueError(f"unknown task {name!r}; choose sorting-5, sorting-2 or retrieval")
