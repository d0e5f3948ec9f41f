"""Small building blocks shared by the heads."""

from __future__ import annotations

import itertools

from torch import nn


class MLP(nn.Sequential):
    """``layers`` linear layers with ReLU between them: ``inputs -> hidden -> ... -> outputs``."""

    def __init__(self, inputs: int, hidden: int, outputs: int, layers: int) -> None:
        dims = [inputs] + [hidden] * (layers - 1)
        modules: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            modules += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        super().__init__(*modules, nn.Linear(dims[-1], outputs))
