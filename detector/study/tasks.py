"""The paper's two synthetic tasks, as seeded tensor data sets.

Both tasks give a *conditioning* sequence ``x`` (what to look for) and a *content* sequence ``y`` (what the
answer is read from), of one length ``n`` (the shorter one padded with ``PAD``).

- **Sorting by an arbitrary order**: ``y`` is 10 symbols drawn with replacement from a 10-symbol alphabet;
  ``x`` is a reference ordering (a permutation of the alphabet) drawn from a fixed pool of ``orderings``
  permutations (5; with 2 the task is trivial). Target: for each ``y_i``, its index in ``x``. Metric:
  per-token accuracy.
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
    target = torch.gather(rank, 1, y)
    return TaskData(f"sorting-{orderings}", x, y, target, per_token=True)


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


def make_task(name: str, count: int, seed: int) -> TaskData:
    if name == "sorting-5":
        return sorting(count, 5, seed)
    if name == "sorting-2":
        return sorting(count, 2, seed)
    if name == "retrieval":
        return retrieval(count, seed)
    raise ValueError(f"unknown task {name!r}; choose sorting-5, sorting-2 or retrieval")
