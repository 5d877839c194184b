"""Positional information: sinusoidal (Vaswani et al. 2017 §3.5), rotary (Su et al. 2021),
T5 relative position buckets (Raffel et al. 2020 §2.1), ALiBi (Press et al. 2022), and the
resizing of a learned 2-D grid of patch positions (Dosovitskiy et al. 2021 §3.2).

Learned absolute positions are a plain ``nn.Embedding`` (or parameter) in the models that use them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError


def sinusoidal_positions(n_positions: int, dim: int, base: float = 10000.0, interleave: bool = True,
                         reach_base: bool = False) -> torch.Tensor:
    """``(n_positions, dim)`` table. Vaswani et al. 2017 §3.5:
    PE(pos, 2i) = sin(pos / base^(2i/dim)), PE(pos, 2i+1) = cos(pos / base^(2i/dim)).

    ``interleave=False`` puts all sines first, then all cosines (Marian/fairseq layout).
    ``reach_base=True`` spaces the wavelengths so that the last one is exactly ``base``:
    pos / base^(i/(dim/2 - 1)) (Whisper's encoder, Radford et al. 2022, ``sinusoids``; even ``dim``).
    """
    if reach_base and (dim % 2 or dim < 4):
        raise InputError(f"reach_base needs an even dim of at least 4, got {dim}")
    exponent = (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2 - 1) if reach_base
                else torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    pos = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)
    inv_freq = base ** -exponent  # (ceil(dim/2),)
    angles = pos * inv_freq  # (n, ceil(dim/2))
    pe = torch.zeros(n_positions, dim, dtype=torch.float64)
    if interleave:
        pe[:, 0::2] = torch.sin(angles)
        pe[:, 1::2] = torch.cos(angles[:, : dim // 2])
    else:
        half = (dim + 1) // 2
        pe[:, :half] = torch.sin(angles)
        pe[:, half:] = torch.cos(angles[:, : dim - half])
    return pe.float()


ROPE_SCALINGS = {  # rope_type -> its fields besides ``factor`` (Hugging Face's names)
    "linear": (),
    "llama3": ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "longrope": ("short_factor", "long_factor", "original_max_position_embeddings", "attention_factor"),
    "yarn": ("original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow", "truncate"),
}
_FACTOR_LISTS = ("short_factor", "long_factor")  # LongRoPE's: one factor per frequency


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def check_rope_scaling(scaling: dict | None, rotary_dim: int | None = None) -> str | None:
    """Why ``scaling`` is not a RoPE scaling :func:`rope_frequencies` computes (for a rotary
    embedding of ``rotary_dim`` dimensions, when given), or None when it is."""
    if scaling is None:
        return None
    kind = scaling.get("rope_type")
    if kind not in ROPE_SCALINGS:
        return f"rope_type must be one of {sorted(ROPE_SCALINGS)}"
    needed = ("rope_type", "factor", *ROPE_SCALINGS[kind])
    if sorted(scaling) != sorted(needed):
        return f"a {kind} scaling has exactly the fields {list(needed)}"
    lists = [k for k in needed[1:] if k in _FACTOR_LISTS]
    if not all(_positive(scaling[k]) for k in needed[1:] if k not in lists and k != "truncate"):
        return "its factors and lengths must be positive numbers"
    if "truncate" in scaling and not isinstance(scaling["truncate"], bool):
        return "truncate must be true or false"
    for k in lists:
        factors = scaling[k]
        if not isinstance(factors, (list, tuple)) or not factors or not all(_positive(f) for f in factors):
            return f"{k} must be a list of positive numbers"
        if rotary_dim is not None and len(factors) != rotary_dim // 2:
            return f"{k} needs one factor per frequency: {rotary_dim // 2}, got {len(factors)}"
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        return "high_freq_factor must exceed low_freq_factor"
    return None


def longrope_attention_factor(factor: float, original: int) -> float:
    """LongRoPE's default scale of cos and sin (Ding et al. 2024; Phi-3): sqrt(1 + ln s / ln L)."""
    return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature (Peng et al. 2023, eq. 22): 0.1 · mscale · ln s + 1 (1 when
    s <= 1). ``transformers`` scales cos and sin by ``yarn_mscale(s, mscale) / yarn_mscale(s,
    mscale_all_dim)`` when a config gives both, else by ``yarn_mscale(s)``."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _yarn_frequencies(inv_freq: torch.Tensor, dim: int, base: float, scaling: dict) -> torch.Tensor:
    """YaRN's "NTK-by-parts" frequencies (Peng et al. 2023, §3.2, as ``transformers``): the
    frequencies that turn more than ``beta_fast`` times over the original context are kept, those
    that turn fewer than ``beta_slow`` times are divided by ``factor``, with a linear ramp over
    the dimensions between (their bounds rounded outwards when ``truncate``)."""
    original = scaling["original_max_position_embeddings"]

    def dim_of(rotations: float) -> float:  # the dimension whose frequency turns this many times
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = dim_of(scaling["beta_fast"]), dim_of(scaling["beta_slow"])
    if scaling["truncate"]:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no division by zero
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device=inv_freq.device) - low) / (high - low)).clamp(0, 1)
    return inv_freq / scaling["factor"] * ramp + inv_freq * (1 - ramp)


def rope_frequencies(head_dim: int, base: float, scaling: dict | None = None, device=None,
                     long: bool = False) -> torch.Tensor:
    """The rotary embedding's ``head_dim / 2`` angular frequencies ``base^(-2i/D)``, fp32.

    ``scaling`` stretches them for contexts longer than the training one (Hugging Face's
    ``rope_parameters`` fields): ``linear`` divides every frequency by ``factor`` (Chen et al.
    2023, position interpolation); ``llama3`` (Llama 3.1) divides the low frequencies (wavelength
    above ``original_max_position_embeddings / low_freq_factor``) by ``factor``, keeps the high ones
    (below ``original_max_position_embeddings / high_freq_factor``) and blends in between;
    ``longrope`` (Ding et al. 2024; Phi-3) divides each frequency by its own factor, from
    ``long_factor`` when ``long`` (sequences past ``original_max_position_embeddings``), else from
    ``short_factor``; ``yarn`` (Peng et al. 2023) keeps the high frequencies, divides the low
    ones by ``factor`` and ramps between (:func:`_yarn_frequencies`).
    """
    dims = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
    inv_freq = 1.0 / (base ** (dims / head_dim))
    if scaling is None:
        return inv_freq
    factor = scaling["factor"]
    if scaling["rope_type"] == "linear":
        return inv_freq / factor
    if scaling["rope_type"] == "longrope":
        factors = scaling["long_factor" if long else "short_factor"]
        return inv_freq / torch.tensor(factors, dtype=torch.float32, device=device)
    if scaling["rope_type"] == "yarn":
        return _yarn_frequencies(inv_freq, head_dim, base, scaling)
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > context / low, inv_freq / factor, inv_freq)
    smooth = (context / wavelength - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelength >= context / high) & (wavelength <= context / low)
    return torch.where(medium, blended, scaled)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer §3.4), "rotate half" layout, with an
    optional frequency ``scaling`` (:func:`rope_frequencies`).

    ``forward(position_ids)`` returns ``(cos, sin)`` of shape ``(B, 1, T, D)`` for
    :func:`apply_rotary`, which rotates q and k so that q·k depends only on their offset; a ``D``
    below the head size rotates its first ``D`` dimensions only. LongRoPE picks its long factors
    for a call whose last position is past ``original_max_position_embeddings`` (as
    ``transformers`` does, per call); LongRoPE and YaRN scale cos and sin by ``attention_factor``.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        if head_dim % 2:
            raise InputError(f"rotary embedding needs an even head_dim, got {head_dim}")
        problem = check_rope_scaling(scaling, head_dim)
        if problem:
            raise InputError(f"rotary scaling {scaling!r}: {problem}")
        self.head_dim, self.base, self.scaling = head_dim, base, scaling
        self.longrope = scaling is not None and scaling["rope_type"] == "longrope"
        # fp32 frequencies kept as a plain attribute, not a buffer that ``model.to(bfloat16)`` would
        # round (the angles pos·freq would be off by up to 1.7 rad at position 4000); per device.
        # LongRoPE: the short and the long frequencies, (2, D/2).
        self._inv_freq: torch.Tensor | None = None

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._inv_freq is None or self._inv_freq.device != position_ids.device:
            sets = (False, True) if self.longrope else (False,)
            self._inv_freq = torch.stack([rope_frequencies(self.head_dim, self.base, self.scaling, position_ids.device,
                                                           long=long) for long in sets])
        inv_freq = self._inv_freq[0]
        if self.longrope:  # no host sync: a select on the device
            past = position_ids.max() + 1 > self.scaling["original_max_position_embeddings"]
            inv_freq = torch.where(past, self._inv_freq[1], inv_freq)
        freqs = position_ids[..., None].float() * inv_freq  # (B, T, D/2)
        emb = torch.cat([freqs, freqs], dim=-1)[:, None]  # (B, 1, T, D)
        scale = None if self.scaling is None else self.scaling.get("attention_factor")
        if scale is not None:
            return emb.cos() * scale, emb.sin() * scale
        return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, H, T, D)`` by the angles in ``cos``/``sin`` ``(B, 1, T, R)``: all of it
    when ``R == D``, else its first ``R`` dimensions (partial rotary embeddings, Phi-4-mini)."""
    rotated = cos.shape[-1]
    if rotated < x.shape[-1]:
        return torch.cat([apply_rotary(x[..., :rotated], cos, sin), x[..., rotated:]], dim=-1)
    return (x * cos + _rotate_half(x) * sin).to(x.dtype)


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """T5's bucketing of ``key_pos - query_pos`` (Raffel et al. 2020 §2.1; Mesh TensorFlow's
    and Hugging Face's formula).

    Half the buckets are exact small offsets, the rest grow logarithmically up to
    ``max_distance`` (farther offsets share the last bucket); bidirectional uses separate
    buckets for keys before and after the query, causal ones (``bidirectional=False``) put
    every later key in bucket 0.

    Shapes: ``relative_position`` any shape of integer offsets, e.g. ``(T, S)``; returns the
    same shape of bucket ids in ``[0, num_buckets)``.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        n = relative_position.abs()
    else:
        n = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    large = max_exact + (
        torch.log(n.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, n, large)


class RelativePositionBias(nn.Module):
    """T5's learned relative position bias: one scalar per (bucket, head), added to the scores.

    ``forward(T, S)`` returns ``(1, H, T, S)`` for queries at positions ``S-T .. S-1``.
    """

    def __init__(self, n_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.embedding = nn.Embedding(num_buckets, n_heads)

    def forward(self, T: int, S: int) -> torch.Tensor:
        device = self.embedding.weight.device
        q_pos = torch.arange(S - T, S, device=device)[:, None]
        k_pos = torch.arange(S, device=device)[None, :]
        buckets = relative_position_bucket(k_pos - q_pos, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, S)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes of ALiBi (Press et al. 2022 §3): a geometric sequence starting at
    2^(-8/n); for a head count that is not a power of two, interleave the next power's."""

    def power_of_two(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


def alibi_bias(n_heads: int, T: int, S: int, device=None) -> torch.Tensor:
    """ALiBi bias ``(1, H, T, S)``: ``-slope · (query_pos - key_pos)`` for queries at the last
    ``T`` of ``S`` positions (future keys get a positive value; the causal mask removes them)."""
    q_pos = torch.arange(S - T, S, device=device)[:, None]
    k_pos = torch.arange(S, device=device)[None, :]
    slopes = alibi_slopes(n_heads).to(device)
    return (slopes[:, None, None] * (k_pos - q_pos)).unsqueeze(0).float()


def resize_position_grid(positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Learned positions of a square grid of patches, resized bicubically to ``height × width``
    patches for images of another size (Dosovitskiy et al. 2021 §3.2, "2D interpolation of the
    pre-trained position embeddings"; bicubic with ``align_corners=False``, as Hugging Face's
    ``interpolate_pos_encoding`` and DINO).

    Shapes: ``positions`` ``(1, N·N, C)`` in row-major grid order -> ``(1, height·width, C)``.
    Computed in float32, returned in ``positions``' dtype.
    """
    _, P, C = positions.shape
    N = math.isqrt(P)
    if N * N != P:
        raise InputError(f"positions must form a square grid of patches, got {P} positions")
    grid = positions.float().reshape(1, N, N, C).permute(0, 3, 1, 2)  # (1, C, N, N)
    grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)  # (1, C, h, w)
    return grid.permute(0, 2, 3, 1).reshape(1, height * width, C).to(positions.dtype)  # (1, h·w, C)
