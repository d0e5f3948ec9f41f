"""Sine position embeddings by hand, and their independence of padding."""

import math

import torch

from detector.models.position_encoding import sine_box_embedding, sine_grid_embedding


def test_grid_embedding_by_hand():
    mask = torch.ones(1, 3, 3, dtype=torch.bool)
    mask[0, :2, :2] = False  # a 2x2 image padded to 3x3
    emb = sine_grid_embedding(mask, dim=8)
    assert emb.shape == (1, 8, 3, 3)
    # channels: y then x, each [sin(c), cos(c), sin(c / 100), cos(c / 100)] with c = 2 pi * (index + 1) / 2
    for row in range(2):
        for col in range(2):
            y, x = math.pi * (row + 1), math.pi * (col + 1)
            expected = [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100)]
            expected += [math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)]
            torch.testing.assert_close(emb[0, :, row, col], torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_grid_embedding_does_not_depend_on_padding():
    small = torch.zeros(1, 4, 5, dtype=torch.bool)
    big = torch.ones(1, 7, 9, dtype=torch.bool)
    big[0, :4, :5] = False
    torch.testing.assert_close(sine_grid_embedding(small, 16), sine_grid_embedding(big, 16)[..., :4, :5])


def test_box_embedding_by_hand():
    emb = sine_box_embedding(torch.tensor([0.25, 0.5, 0.1, 0.2]), dim=8)
    # each coordinate v: [sin(2 pi v), cos(2 pi v)] (dim 8: two channels per coordinate, frequency 1)
    expected = []
    for v in (0.25, 0.5, 0.1, 0.2):
        expected += [math.sin(2 * math.pi * v), math.cos(2 * math.pi * v)]
    torch.testing.assert_close(emb, torch.tensor(expected), atol=1e-6, rtol=1e-6)
