"""Patch embedding against Dosovitskiy et al. 2021 eq. 1 written out: flatten each patch, project it."""

import torch

from attnkit.nn import PatchEmbedding


def test_patch_embedding_is_a_linear_map_of_each_flattened_patch_in_row_major_order():
    B, channels, H, W, P, C = 2, 3, 8, 12, 4, 5
    embed = PatchEmbedding(channels, C, P)
    images = torch.randn(B, channels, H, W)
    out = embed(images)
    assert out.shape == (B, (H // P) * (W // P), C)
    E, b = embed.proj.weight.reshape(C, -1), embed.proj.bias  # eq. 1: x_p E, E of shape (P²·channels, C)
    for i in range(H // P):
        for j in range(W // P):
            patch = images[:, :, i * P:(i + 1) * P, j * P:(j + 1) * P].reshape(B, -1)  # (B, channels·P·P)
            torch.testing.assert_close(out[:, i * (W // P) + j], patch @ E.T + b, atol=1e-5, rtol=1e-5)
