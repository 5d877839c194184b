"""Positional encodings against the papers' formulas and Hugging Face's implementations."""

import math

import pytest
import torch

from attnkit.errors import InputError
from attnkit.nn import (
    RelativePositionBias,
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    relative_position_bucket,
    resize_position_grid,
    sinusoidal_positions,
)


@pytest.mark.parametrize("n,dim", [(50, 16), (7, 6), (3, 1), (20, 9)])
def test_sinusoidal_equals_paper_formula(n, dim):
    """Vaswani et al. 2017 §3.5: PE(pos, 2i) = sin(pos/10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""
    pe = sinusoidal_positions(n, dim)
    expected = torch.zeros(n, dim)
    for pos in range(n):
        for i in range(dim):
            angle = pos / 10000 ** ((i - i % 2) / dim)
            expected[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    torch.testing.assert_close(pe, expected, atol=1e-6, rtol=1e-6)


def test_sinusoidal_non_interleaved_is_sines_then_cosines():
    n, dim = 10, 8
    pe = sinusoidal_positions(n, dim, interleave=False)
    for pos in range(n):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            assert pe[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, dim // 2 + i].item() == pytest.approx(math.cos(angle), abs=1e-6)


def _rope_complex(x, positions, base=10000.0):
    """RoFormer eq. 13 with complex numbers: pair (x_i, x_{i+D/2}) is rotated by pos·θ_i."""
    D = x.shape[-1]
    theta = torch.tensor([base ** (-2 * i / D) for i in range(D // 2)], dtype=torch.float64)
    z = torch.complex(x[..., : D // 2].double(), x[..., D // 2:].double())
    z = z * torch.polar(torch.ones_like(theta), positions.double()[:, None] * theta)
    return torch.cat([z.real, z.imag], -1).float()


def test_rotary_equals_complex_rotation():
    B, H, T, D = 2, 3, 6, 8
    rope = RotaryEmbedding(D)
    pos = torch.arange(T).expand(B, T)
    cos, sin = rope(pos)
    x = torch.randn(B, H, T, D)
    torch.testing.assert_close(apply_rotary(x, cos, sin), _rope_complex(x, torch.arange(T)), atol=1e-5, rtol=1e-5)


def test_rotary_preserves_norms():
    B, H, T, D = 2, 2, 40, 16
    cos, sin = RotaryEmbedding(D)(torch.arange(T).expand(B, T) * 37)
    x = torch.randn(B, H, T, D)
    torch.testing.assert_close(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-4, rtol=1e-5)


def test_rotary_dot_product_depends_only_on_offset():
    D = 16
    rope = RotaryEmbedding(D)
    q, k = torch.randn(1, 1, 1, D), torch.randn(1, 1, 1, D)

    def score(m, n):
        cq, sq = rope(torch.tensor([[m]]))
        ck, sk = rope(torch.tensor([[n]]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item()

    for m, n in [(3, 1), (10, 2), (5, 9)]:
        for shift in (1, 17, 250):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    assert score(5, 1) != pytest.approx(score(5, 3), abs=1e-3)  # but it does depend on the offset


def test_rotary_angles_stay_exact_in_a_model_cast_to_bf16_or_fp16():
    """``model.to(bfloat16)`` casts floating buffers; the rotation angles pos·θ_i must not follow
    (a bf16 frequency table put them up to 1.7 rad off at position 4000)."""
    from attnkit import GPT, GPTConfig

    positions = torch.arange(0, 4096, 7)[None]
    ref = RotaryEmbedding(8)(positions)
    for dtype in (torch.bfloat16, torch.float16):
        model = GPT(GPTConfig.from_preset("gpt-tiny", positional="rotary", n_positions=4096)).to(dtype)
        cos, sin = model.rotary(positions)
        assert cos.dtype == torch.float32 and model.config.dim_per_head == 8
        assert torch.equal(cos, ref[0]) and torch.equal(sin, ref[1])


def test_rotary_refuses_odd_head_dim():
    with pytest.raises(InputError, match="even head_dim"):
        RotaryEmbedding(7)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20), (16, 64)])
def test_relative_position_bucket_equals_transformers_t5(bidirectional, num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 301)[None, :] - torch.arange(0, 3)[:, None]
    ours = relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    theirs = T5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=num_buckets,
                                                   max_distance=max_distance)
    assert torch.equal(ours, theirs)


def test_relative_position_bias_uses_key_minus_query_bottom_right():
    H, T, S = 3, 2, 5
    rpb = RelativePositionBias(H, num_buckets=8, max_distance=16, bidirectional=False)
    out = rpb(T, S)
    assert out.shape == (1, H, T, S)
    for i in range(T):
        for j in range(S):
            bucket = relative_position_bucket(torch.tensor(j - (S - T + i)), False, 8, 16)
            torch.testing.assert_close(out[0, :, i, j], rpb.embedding.weight[bucket])


def test_alibi_slopes_for_8_heads_are_the_papers():
    """Press et al. 2022 §3: for 8 heads the slopes are 1/2, 1/4, ..., 1/256."""
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -i for i in range(1, 9)]))


@pytest.mark.parametrize("n_heads", [1, 2, 4, 5, 6, 12, 16, 20, 25])
def test_alibi_slopes_match_transformers_bloom(n_heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    # Bloom's tensor is slope · position; position 1 of an all-ones mask reads off the slope.
    alibi = build_alibi_tensor(torch.ones(1, 2, dtype=torch.long), n_heads, torch.float32)  # (H, 1, 2)
    torch.testing.assert_close(alibi_slopes(n_heads).float(), alibi[:, 0, 1])


def test_alibi_bias_is_minus_slope_times_distance():
    H, T, S = 4, 3, 6
    b = alibi_bias(H, T, S)
    slopes = alibi_slopes(H)
    assert b.shape == (1, H, T, S)
    for h in range(H):
        for i in range(T):
            for j in range(S):
                q_pos = S - T + i
                assert b[0, h, i, j].item() == pytest.approx(-slopes[h].item() * (q_pos - j))


def test_resizing_a_position_grid_to_its_own_size_changes_nothing():
    grid = torch.randn(1, 16, 8)
    torch.testing.assert_close(resize_position_grid(grid, 4, 4), grid)


def test_resized_position_grid_is_bicubic_over_the_grid_in_row_major_order():
    """The table is read as an (N, N) image per channel; a linear ramp along the columns stays a
    ramp along the columns (bicubic reproduces linear functions away from the borders)."""
    N, C = 4, 3
    ramp = torch.arange(N, dtype=torch.float32).repeat(N)  # value = column index, row-major
    grid = ramp[None, :, None].expand(1, N * N, C).contiguous()
    out = resize_position_grid(grid, 3, 8).view(3, 8, C)
    assert torch.allclose(out[0], out[2]) and torch.allclose(out[..., 0], out[..., 2])  # constant down rows/channels
    cols = out[0, :, 0]
    assert torch.all(cols[1:] >= cols[:-1]) and cols[0] < 0.5 and cols[-1] > N - 1.5
    with pytest.raises(InputError, match="square grid of patches, got 15 positions"):
        resize_position_grid(torch.randn(1, 15, 8), 4, 4)
