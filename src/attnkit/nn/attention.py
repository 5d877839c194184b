"""Scaled dot-product attention (Vaswani et al. 2017 §3.2.1) and multi-head attention (§3.2.2).

``scaled_dot_product_attention`` is the one attention kernel of attnkit. By default it calls
PyTorch's fused ``torch.nn.functional.scaled_dot_product_attention``; with
``need_weights=True`` it runs the reference formula and also returns the weights. Both paths
share the mask and bias handling below, and a property test checks they agree.

Two exceptions, both for bf16 on CPU, where PyTorch's flash kernel is slow at short lengths.
Training-sized attention (2 cores, GPT 6 × 384 heads, T = 256: 15-17 ms forward + backward per
layer) takes 5-7 ms as two plain matmuls and a softmax, so bf16 CPU attention with at most
``MATMUL_MAX_SCORES`` scores per head (T·S) and at least ``MATMUL_MIN_SCORES`` in all takes that
path; longer sequences keep the fused kernel and its linear memory, tiny ones its lower
per-call cost. Without gradients (a prompt), the plain matmuls go block by block over the
queries (``MATMUL_BLOCK``), which bounds their memory, so they serve longer prompts too (up to
``MATMUL_BLOCK_MAX_SCORES`` scores a block), 1.7x faster than the fused kernel at 1-4k tokens
(one-off timings).
And a decoding step (one query per sequence) runs the fused kernel in fp32, which is 2-6x
faster than in bf16 there (12 heads over 144 cached positions: 11 vs 67 µs; the fp32 casts of
the cached keys and values included, it stays faster up to 4096 positions).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.nn.cache import KVCache
from attnkit.nn.linear import Linear
from attnkit.nn.masks import band_mask, causal_mask
from attnkit.nn.norm import build_norm
from attnkit.nn.positional import apply_rotary


def _check_mask(mask: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> None:
    if mask.dtype != torch.bool:
        raise InputError(f"attention mask must be bool (True = may attend), got dtype {mask.dtype}")
    B, H, T, _ = q.shape
    S = k.shape[-2]
    target = (B, H, T, S)
    if mask.dim() > 4 or any(m not in (1, t) for m, t in zip(mask.shape[::-1], target[::-1])):
        raise InputError(f"attention mask of shape {tuple(mask.shape)} does not broadcast to (B, H, T, S) = {target}")


MATMUL_MAX_SCORES = 512 * 512  # per head (T·S)
MATMUL_MIN_SCORES = 4096  # in all (B·H·T·S)
# Without gradients, queries go through the plain matmuls in blocks of this many, each over the
# keys it can see. One-off timings, 2 cores, bf16, 14 heads × 64, causal over 1024 tokens: 7.1 ms,
# against 11.5 in one piece and 15.7 in the fused kernel (2048: 29 vs 51 ms fused; 4096: 89 vs 158).
MATMUL_BLOCK = 128
MATMUL_BLOCK_MAX_SCORES = 1 << 25  # in all (B·H·MATMUL_BLOCK·S): longer contexts keep the fused kernel


def _records_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on these tensors."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _matmul_attention(q, k, v, attn_mask, is_causal: bool, scale: float) -> torch.Tensor:
    """``softmax(q kᵀ · scale + mask) v`` with plain batched matmuls, in q's dtype (the softmax
    accumulates in fp32). ``attn_mask``: bool (True = may attend) or additive float. The scale
    and a mask of at most 2-D (causal) are folded into the first matmul (``baddbmm``), which
    saves two passes over the scores forward and backward. Without gradients to record, the
    queries go in blocks of ``MATMUL_BLOCK`` (scores of one block at a time), and with
    ``is_causal`` each block reads only the keys up to its last query (half the work)."""
    B, H, T, D = q.shape
    S = k.shape[-2]
    block = T if _records_grad(q, k, v) else MATMUL_BLOCK
    queries = q.reshape(B * H, T, D)
    # Keys in a KV cache are a slice of a longer buffer; PyTorch's bf16 bmm takes a slow path for
    # such strides (2 cores, 8 × 12 heads × 80 keys: 113 µs vs 37 + a 10 µs copy).
    keys = k.reshape(B * H, S, D).contiguous()
    y = None if block >= T else q.new_empty(B, H, T, D)
    for start in range(0, T, block):
        end = min(start + block, T)
        n = S - T + end if is_causal else S  # the keys this block's queries can see
        if is_causal:
            mask = causal_mask(end - start, n, device=q.device)  # bottom-right aligned, as the whole one
        elif attn_mask is not None and attn_mask.shape[-2] != 1:
            mask = attn_mask[..., start:end, :]
        else:
            mask = attn_mask
        if mask is not None and mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
        folded = mask is not None and mask.dim() <= 2
        scores = torch.baddbmm(mask if folded else q.new_zeros(()), queries[:, start:end], keys[:, :n].transpose(1, 2),
                               alpha=scale)
        scores = scores.view(B, H, end - start, n)
        if mask is not None and not folded:
            scores = scores + mask
        out = torch.matmul(scores.softmax(dim=-1), v[:, :, :n])
        if y is None:
            return out
        y[:, :, start:end] = out
    return y


def _halves(x: torch.Tensor, rotary: int) -> torch.Tensor:
    """The first ``rotary`` dimensions of ``x``, stored as interleaved pairs ``(x0, x1), (x2, x3),
    ...``, regrouped as halves, evens first, for "rotate half" (:func:`apply_rotary`); the rest as
    they are. Applied to queries and keys alike, it changes no score."""
    return torch.cat([x[..., 0:rotary:2], x[..., 1:rotary:2], x[..., rotary:]], dim=-1)


def _repeat_kv(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Grouped-query attention: share each key/value head across ``n_heads // Hkv`` query heads."""
    Hkv = x.shape[1]
    if Hkv == n_heads:
        return x
    if n_heads % Hkv:
        raise InputError(f"query heads ({n_heads}) must be a multiple of key/value heads ({Hkv})")
    return x.repeat_interleave(n_heads // Hkv, dim=1)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    need_weights: bool = False,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    window: tuple[int, int] | None = None,
):
    """softmax(Q Kᵀ · scale + bias) V, with a boolean mask (True = may attend).

    Args:
        q: ``(B, H, T, D)`` queries. k, v: ``(B, Hkv, S, D)``; ``Hkv`` may divide ``H`` (GQA/MQA).
        mask: bool, broadcastable to ``(B, H, T, S)``.
        bias: float additive bias broadcastable to ``(B, H, T, S)`` (T5 relative bias, ALiBi).
        is_causal: causal masking, bottom-right aligned when ``T < S`` (cached decoding).
        scale: defaults to ``1/√D``; ``scale=1.0`` gives T5's unscaled attention.
        need_weights: also return the ``(B, H, T, S)`` attention weights (reference path).
        softcap: soft-cap the scores to ``softcap · tanh(scores / softcap)`` before the mask and
            bias (Gemma 2). No fused kernel computes it: it takes the reference path, with its
            ``(B, H, T, S)`` scores.

        sinks: ``(H,)`` attention-sink logits (GPT-OSS): each head's softmax also counts one more
            score, ``sinks[h]``, whose value is zero, so a query may attend to "nothing". Run as
            one more key that every query sees, on any kernel: the queries gain a dimension
            holding ``sinks[h] / scale``, the keys a zero there, and the sink key is ``(0, ..., 1)``
            with a zero value. The returned weights leave the sink out (rows sum to less than 1).
        window: ``(left, right)``: query ``i``, at position ``S - T + i``, sees only the keys from
            ``left`` before it to ``right`` after it (a sliding window: Mistral's causal one is
            ``(W - 1, 0)`` with ``is_causal``, ModernBERT's local attention ``(W/2, W/2)``; the
            band of :func:`~attnkit.nn.masks.band_mask`). Computed block by block over the
            queries, each block on the keys it can see (:func:`_windowed`, soft caps and sinks
            too): time and memory grow with ``T · (left + right)``, not ``T · S``, and no
            ``(T, S)`` mask is built, unless the weights, a bias or a mask other than a
            key-padding one need the whole score matrix anyway (or under ``torch.compile``,
            whose inductor fails on the unfolded blocks in PyTorch 2.13).

    A query row with no allowed key returns zeros (and zero weights), never NaN.
    Returns ``y`` of shape ``(B, H, T, D)``, or ``(y, weights)`` when ``need_weights``.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise InputError(f"q, k, v must be 4-D (B, H, T, D); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    H, T, S = q.shape[1], q.shape[-2], k.shape[-2]
    if v.shape[-2] != S or k.shape[:2] != v.shape[:2]:
        raise InputError(f"k and v must have the same (B, Hkv, S); got {tuple(k.shape)} and {tuple(v.shape)}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if mask is not None:
        _check_mask(mask, q, k)
        while mask.dim() < 2:  # PyTorch's fused kernel needs at least (T, S)
            mask = mask.unsqueeze(0)
    if window is not None:
        left, right = window
        if left < 0 or right < 0:
            raise InputError(f"window must be (left, right) with both >= 0, got {window}")
        right = 0 if is_causal else right
        if left >= S - 1 and (is_causal or right >= T - 1):
            pass  # every query sees every key anyway
        elif (_masks_keys(mask) and not need_weights and bias is None and _window_pays(T, S, left, right)
              and not torch.compiler.is_compiling()):  # inductor fails on the unfolded blocks: the mask then
            return _windowed(q, k, v, mask, left, right, dropout_p, scale, softcap, sinks)
        else:
            band = band_mask(T, S, left, right, device=q.device)
            mask = band if mask is None else mask & band
    k, v = _repeat_kv(k, H), _repeat_kv(v, H)
    if is_causal and T == 1:
        is_causal = False  # one query at the last position (bottom-right): it may see every key
    if is_causal and (T != S or mask is not None or bias is not None or need_weights or softcap is not None):
        # PyTorch's is_causal is top-left aligned and exclusive with attn_mask: build it.
        mask = causal_mask(T, S, device=q.device) if mask is None else mask & causal_mask(T, S, device=q.device)
        is_causal = False
    if sinks is not None:
        q, k, v, mask, bias, is_causal = _with_sink_key(q, k, v, mask, bias, is_causal, sinks, scale)

    row_ok = None
    if mask is not None:
        # Rows with no allowed key: let them attend everything, then zero them out. Keeps every
        # backend (and the backward pass) free of NaN.
        row_ok = mask.any(-1, keepdim=True)
        mask = mask | ~row_ok

    if not need_weights and softcap is None:
        attn_mask = mask
        if bias is not None:
            attn_mask = bias.to(q.dtype)
            if mask is not None:
                attn_mask = attn_mask.masked_fill(~mask, torch.finfo(q.dtype).min)
        bf16_cpu = q.dtype == torch.bfloat16 and q.device.type == "cpu" and not torch.compiler.is_compiling()
        if bf16_cpu and T == 1:  # a decoding step: the fused kernel with one query is 2-6x faster in fp32
            if attn_mask is not None and attn_mask.dtype != torch.bool:
                attn_mask = attn_mask.float()
            y = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                scale=scale,
            ).to(q.dtype)
        elif bf16_cpu and dropout_p == 0.0 and q.shape[0] * H * T * S >= MATMUL_MIN_SCORES and (
                T * S <= MATMUL_MAX_SCORES
                or (q.shape[0] * H * MATMUL_BLOCK * S <= MATMUL_BLOCK_MAX_SCORES and not _records_grad(q, k, v))):
            y = _matmul_attention(q, k, v, attn_mask, is_causal, scale)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
            )
        # torch.where keeps y's (B, T, H, D) memory layout, so the caller's head merge stays a view.
        return y if row_ok is None else torch.where(row_ok, y, 0.0)

    # Reference path, Vaswani et al. 2017 eq. 1, computed in float32 for stable weights (autocast
    # would run the matmuls in its low dtype).
    with torch.autocast(q.device.type, enabled=False):
        scores = torch.matmul(q.float(), k.float().transpose(-2, -1)) * scale  # (B, H, T, S)
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if bias is not None:
            scores = scores + bias.float()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        if row_ok is not None:
            weights = weights.masked_fill(~row_ok, 0.0)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        y = torch.matmul(weights, v.float()).to(q.dtype)
    if sinks is not None:
        weights = weights[..., 1:]  # the sink's share goes nowhere
    return (y, weights.to(q.dtype)) if need_weights else y


def _masks_keys(mask: torch.Tensor | None) -> bool:
    """Whether ``mask`` masks keys alone, the same for every head and query: none, ``(B, 1, 1, S)``
    (a padding mask) or ``(1, ..., S)``."""
    return mask is None or all(d == 1 for d in (mask.shape[1:-1] if mask.dim() == 4 else mask.shape[:-1]))


WINDOW_BLOCK = 128  # queries per block of windowed attention, at least (else a quarter of left + right)


def _window_blocks(T: int, left: int, right: int) -> tuple[int, int, int]:
    """``(block, n, L)``: queries per block, blocks, keys per block of :func:`_windowed`. Blocks of
    a quarter of the band make each block read 1.25× the keys one query sees: fewer wasted scores
    than blocks as wide as the band (2×), in blocks still large enough for the kernels."""
    n = -(-T // max((left + right) // 4, WINDOW_BLOCK))
    block = -(-T // n)  # the queries shared evenly: the last block is not mostly padding
    return block, n, block + left + right


def _window_pays(T: int, S: int, left: int, right: int) -> bool:
    """Whether :func:`_windowed` computes at most 70% of the scores the whole (T, S) would (2
    cores: below that, the band as a mask was as fast at 512 tokens), or decodes (one query: its
    keys are sliced out, and no mask is built each step)."""
    block, n, L = _window_blocks(T, left, right)
    return T == 1 or n * block * L <= 0.7 * T * S


def _windowed(q, k, v, key_mask, left: int, right: int, dropout_p: float, scale: float, softcap: float | None = None,
              sinks: torch.Tensor | None = None) -> torch.Tensor:
    """Attention within a band (``scaled_dot_product_attention``'s ``window``), block by block:
    the queries are cut into ``n`` blocks of ``block``, and block ``b`` attends to the ``L = block +
    left + right`` keys from ``left`` before its first query to ``right`` after its last, with
    one ``(block, L)`` band shared by every block (and the key-padding mask, ``(B, 1, 1, S)`` or
    none). The blocks are a batch of one fused attention call over the keys unfolded per block
    (``n · L`` keys: about ``T + n (left + right)``, at most about ``5 T`` with the blocks of
    :func:`_window_blocks`), with the soft cap and the sinks applied in each block."""
    B, H, T, D = q.shape
    S = k.shape[-2]
    block, n, L = _window_blocks(T, left, right)
    start, end = S - T - left, S - T + n * block + right  # the key positions the blocks read
    front, back = max(0, -start), max(0, end - S)

    def per_block(x: torch.Tensor) -> torch.Tensor:
        """(B, h, S, D) keys or values -> (B·n, h, L, D), each block's own."""
        x = F.pad(x[:, :, max(start, 0):min(end, S)], (0, 0, front, back))
        return x.unfold(2, L, block).permute(0, 2, 1, 4, 3).reshape(B * n, x.shape[1], L, D)

    valid = torch.ones(1, S, dtype=torch.bool, device=q.device) if key_mask is None else key_mask.reshape(-1, S)
    valid = F.pad(valid[:, max(start, 0):min(end, S)], (front, back))  # keys outside the sequence: masked
    valid = valid.unfold(1, L, block).expand(B, n, L).reshape(B * n, 1, 1, L)
    mask = band_mask(block, L, left, right, offset=left, device=q.device) & valid  # (B·n, 1, block, L)
    queries = F.pad(q, (0, 0, 0, n * block - T)).view(B, H, n, block, D).transpose(1, 2).reshape(B * n, H, block, D)
    y = scaled_dot_product_attention(queries, per_block(k), per_block(v), mask=mask, dropout_p=dropout_p, scale=scale,
                                     softcap=softcap, sinks=sinks)
    return y.view(B, n, H, block, D).transpose(1, 2).reshape(B, H, n * block, D)[:, :, :T]


def _with_sink_key(q, k, v, mask, bias, is_causal: bool, sinks: torch.Tensor, scale: float):
    """Attention sinks as one more key in front (see :func:`scaled_dot_product_attention`):
    ``(q, k, v, mask, bias, is_causal)`` with the sink key, its column always allowed."""
    B, H, T, _ = q.shape
    S = k.shape[-2]
    if is_causal:  # the sink key shifts the keys: the causal mask is built
        causal = causal_mask(T, S, device=q.device)
        mask, is_causal = causal if mask is None else mask & causal, False
    q = torch.cat([q, (sinks.to(q.dtype) / scale).view(1, H, 1, 1).expand(B, H, T, 1)], dim=-1)
    k = F.pad(k, (0, 1))
    sink_key = F.pad(k.new_ones(B, H, 1, 1), (k.shape[-1] - 1, 0))  # (0, ..., 0, 1)
    k = torch.cat([sink_key, k], dim=2)
    v = torch.cat([v.new_zeros(B, H, 1, v.shape[-1]), v], dim=2)
    if mask is not None:
        mask = torch.cat([torch.ones_like(mask[..., :1]), mask], dim=-1)
    if bias is not None:
        bias = F.pad(bias, (1, 0))
    return q, k, v, mask, bias, is_causal


def _last_keys(t: torch.Tensor | None, S: int) -> torch.Tensor | None:
    """A mask or bias over every position, cut to the last ``S`` keys: those a rolling cache
    (:class:`~attnkit.nn.KVCache`'s ``keep``) still holds."""
    return t if t is None or t.shape[-1] <= S else t[..., -S:]


class MultiHeadAttention(nn.Module):
    """Vaswani et al. 2017 §3.2.2. Self- or cross-attention, GQA/MQA, RoPE, bias, KV cache.

    Args:
        d_model: model width ``C``.
        n_heads: query heads ``H``.
        n_kv_heads: key/value heads (``H`` by default; fewer gives grouped-query attention,
            1 gives multi-query attention).
        head_dim: ``D`` (``d_model // n_heads`` by default; T5 sets it separately).
        bias: biases on the projections.
        qkv_bias: biases on the query/key/value projections alone (``bias`` when None; ViT's
            ``qkv_bias=False`` keeps the output projection's).
        key_bias: False drops the key projection's bias alone (Whisper's). It could only add
            q·b to every score of a query, which softmax ignores. Needs ``fused_qkv=False``.
        fused_qkv: one ``qkv_proj`` matrix for self-attention (``kv_proj`` for cross-attention)
            instead of separate ``q_proj``/``k_proj``/``v_proj``.
        cross: keys and values come from ``context`` (encoder output).
        dropout: attention-weight dropout (training only).
        scale: score scale; ``None`` is ``1/√D``.
        qk_norm: a norm kind (``"rmsnorm"``, ...) over each head's queries and keys before the
            rotary embedding (Qwen3, OLMo 2, Gemma 3; Dehghani et al. 2023's QK-norm), with ``norm_eps``.
        softcap: soft-capped scores (Gemma 2; see :func:`scaled_dot_product_attention`).
        qk_norm_per_head: False normalises all heads' queries together (and all keys), over
            the whole projection, before it is split into heads (OLMo 2).
        out_bias: a bias on the output projection (``bias`` when None; GPT-J has none there but
            biases elsewhere).
        rope_interleave: the rotary dimensions of each query/key head rotate in interleaved pairs
            ``(x0, x1), (x2, x3), ...`` (GPT-J, Cohere) rather than halves; they are regrouped
            evens first before the rotation, which changes no score (queries and keys alike).
        temperature: ``(floor, strength)``: the query at cache slot ``p`` (counting from 0, left
            padding included) is multiplied by ``1 + strength · log(1 + ⌊(p + 1) / floor⌋)``
            (Llama 4's temperature tuning of its layers without positions; Nakanishi 2025).
        qk_norm_after_rope: the per-head query/key norms after the rotary embedding, not before
            (HunYuan).
        clip_qkv: queries, keys and values clamped to ``±clip_qkv`` after their projections (OLMo;
            after the all-heads query/key norms with ``qk_norm_per_head=False``, as OLMoE).
        sinks: a learned attention-sink logit per head (GPT-OSS; see
            :func:`scaled_dot_product_attention`), ``sinks`` ``(H,)``, initialised to 0.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        bias: bool = True,
        fused_qkv: bool = True,
        cross: bool = False,
        dropout: float = 0.0,
        scale: float | None = None,
        qkv_bias: bool | None = None,
        key_bias: bool = True,
        qk_norm: str | None = None,
        norm_eps: float = 1e-6,
        softcap: float | None = None,
        qk_norm_per_head: bool = True,
        rope_interleave: bool = False,
        out_bias: bool | None = None,
        temperature: tuple[float, float] | None = None,
        sinks: bool = False,
        clip_qkv: float | None = None,
        qk_norm_after_rope: bool = False,
    ):
        super().__init__()
        self.clip_qkv, self.qk_norm_after_rope = clip_qkv, qk_norm_after_rope
        self.rope_interleave, self.temperature = rope_interleave, temperature
        self.sinks = nn.Parameter(torch.zeros(n_heads)) if sinks else None
        in_bias = bias if qkv_bias is None else qkv_bias
        if not key_bias and fused_qkv:
            raise InputError("key_bias=False needs separate projections (fused_qkv=False)")
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if head_dim is None:
            if d_model % n_heads:
                raise InputError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
            head_dim = d_model // n_heads
        if n_heads % n_kv_heads:
            raise InputError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.cross, self.fused_qkv, self.dropout, self.scale = cross, fused_qkv, dropout, scale
        self.softcap = softcap
        q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
        self.q_dim, self.kv_dim = q_dim, kv_dim
        if fused_qkv and not cross:
            self.qkv_proj = Linear(d_model, q_dim + 2 * kv_dim, bias=in_bias)
        elif fused_qkv:
            self.q_proj = Linear(d_model, q_dim, bias=in_bias)
            self.kv_proj = Linear(d_model, 2 * kv_dim, bias=in_bias)
        else:
            self.q_proj = Linear(d_model, q_dim, bias=in_bias)
            self.k_proj = Linear(d_model, kv_dim, bias=in_bias and key_bias)
            self.v_proj = Linear(d_model, kv_dim, bias=in_bias)
        self.out_proj = Linear(q_dim, d_model, bias=bias if out_bias is None else out_bias)
        self.q_norm = self.k_norm = None
        self.qk_norm_per_head = qk_norm_per_head
        if qk_norm is not None:
            self.q_norm = build_norm(qk_norm, head_dim if qk_norm_per_head else q_dim, norm_eps, bias=False)
            self.k_norm = build_norm(qk_norm, head_dim if qk_norm_per_head else kv_dim, norm_eps, bias=False)

    def _project(self, x: torch.Tensor, context: torch.Tensor | None):
        if self.fused_qkv and not self.cross:
            return self.qkv_proj(x).split([self.q_dim, self.kv_dim, self.kv_dim], dim=-1)
        q = self.q_proj(x)
        if context is None:
            return q, None, None
        if self.fused_qkv:
            k, v = self.kv_proj(context).split([self.kv_dim, self.kv_dim], dim=-1)
        else:
            k, v = self.k_proj(context), self.v_proj(context)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        need_weights: bool = False,
        window: tuple[int, int] | None = None,
    ):
        """Attend from ``x`` ``(B, T, C)`` to itself, or to ``context`` ``(B, S, C)`` when cross.

        ``mask`` is bool, broadcastable to ``(B, H, T, S)``. ``rotary`` is ``(cos, sin)`` for the
        positions of ``x``. ``window``: ``(left, right)``, a sliding window
        (:func:`scaled_dot_product_attention`'s). With ``cache``, new keys/values are written into
        it (self-attention) or computed once from ``context`` and reused (cross-attention).
        Returns ``(y, weights)``: ``y`` is ``(B, T, C)``, ``weights`` ``(B, H, T, S)`` or None.
        """
        B, T, _ = x.shape
        if self.cross and context is None and (cache is None or cache.length == 0):
            raise InputError("cross-attention needs `context` (the encoder output) on its first call")
        reuse = self.cross and cache is not None and cache.length > 0
        q, k, v = self._project(x, None if reuse else (context if self.cross else x))
        # The norms act on each head's vector (before the rotary embedding, or after it), or on all
        # heads' at once before the split.
        head_norm = self.q_norm is not None and self.qk_norm_per_head and not self.qk_norm_after_rope
        if self.q_norm is not None and not self.qk_norm_per_head:
            q = self.q_norm(q)
            k = k if k is None else self.k_norm(k)
        if self.clip_qkv is not None:  # OLMo's clamp, after OLMoE's all-heads norms
            q, k, v = (None if t is None else t.clamp(-self.clip_qkv, self.clip_qkv) for t in (q, k, v))
        q = q.view(B, T, self.n_heads, self.head_dim)
        q = (self.q_norm(q) if head_norm else q).transpose(1, 2)  # (B, H, T, D)
        if k is not None:  # a cross-attention context may have fewer rows (see KVCache's repeat)
            Bk, S_new = k.shape[:2]
            k = k.view(Bk, S_new, self.n_kv_heads, self.head_dim)
            k = (self.k_norm(k) if head_norm else k).transpose(1, 2)  # (B, Hkv, S, D)
            v = v.view(Bk, S_new, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if rotary is not None:
            cos, sin = rotary
            if self.rope_interleave:
                q, k = _halves(q, cos.shape[-1]), _halves(k, cos.shape[-1])
            q = apply_rotary(q, cos, sin)
            k = apply_rotary(k, cos, sin)
        if self.qk_norm_after_rope and self.q_norm is not None:
            q = self.q_norm(q)
            k = self.k_norm(k) if k is not None and not reuse else k
        if self.temperature is not None:
            floor, strength = self.temperature
            past = cache.length if cache is not None else 0
            slots = torch.arange(past + 1, past + T + 1, device=q.device, dtype=torch.float32)
            q = (q * (torch.log1p(torch.floor(slots / floor)) * strength + 1.0)[:, None]).to(q.dtype)
        if cache is not None:
            k, v = cache.keys_values() if reuse else cache.update(k, v)
            mask, bias = _last_keys(mask, k.shape[2]), _last_keys(bias, k.shape[2])
        out = scaled_dot_product_attention(
            q, k, v, mask=mask, bias=bias, is_causal=is_causal and not self.cross,
            dropout_p=self.dropout if self.training else 0.0, scale=self.scale, need_weights=need_weights,
            softcap=self.softcap, sinks=self.sinks, window=window,
        )
        y, weights = out if need_weights else (out, None)
        y = y.transpose(1, 2).reshape(B, T, self.q_dim)  # (B, T, H*D)
        return self.out_proj(y), weights


class MultiHeadLatentAttention(nn.Module):
    """Multi-head latent attention (DeepSeek-AI 2024, DeepSeek-V2 §2.1; DeepSeek-V3).

    Keys and values come from one ``kv_lora_rank``-wide latent ``c`` per position (RMS-normed),
    which all heads share, plus a ``rope_dim``-wide key ``k_rope`` that all heads share and that
    carries the rotary position. Head ``h``'s key is ``[W_k^h c, k_rope]`` and its value
    ``W_v^h c`` (``kv_b_proj`` stacks the ``W_k^h`` and ``W_v^h``); its query
    ``[q_nope, q_rope]`` comes from ``x`` directly, or through a ``q_lora_rank``-wide latent
    (RMS-normed). A score ``q_nope·W_k^h c + q_rope·k_rope`` equals ``(W_k^hᵀ q_nope)·c +
    q_rope·k_rope``, so the queries are moved into the latent space instead of the keys out of
    it (the "absorbed" form of §2.1.2): attention runs as multi-query attention over
    ``[c, k_rope]`` with the values ``c``, and each head's output is then mapped by ``W_v^h``.
    The KV cache holds those two, ``kv_lora_rank + rope_dim`` and ``kv_lora_rank`` numbers per
    position and layer, whatever the number of heads. Same interface as
    :class:`MultiHeadAttention` (self-attention only); ``rotary`` is ``(cos, sin)`` of width
    ``rope_dim``, and ``scale`` defaults to ``(nope_dim + rope_dim) ** -0.5``. ``rope_interleave``:
    the projections give the rotary dimensions as interleaved pairs ``(x0, x1), (x2, x3), ...``
    (DeepSeek's checkpoints), which are regrouped evens first before the "rotate half" rotation,
    as ``transformers`` does.
    """

    def __init__(self, d_model: int, n_heads: int, kv_lora_rank: int, nope_dim: int, rope_dim: int, v_dim: int,
                 q_lora_rank: int | None = None, bias: bool = False, dropout: float = 0.0,
                 scale: float | None = None, norm_eps: float = 1e-6, rope_interleave: bool = False):
        super().__init__()
        self.rope_interleave = rope_interleave
        self.n_heads, self.kv_lora_rank, self.nope_dim, self.rope_dim, self.v_dim = (n_heads, kv_lora_rank, nope_dim,
                                                                                      rope_dim, v_dim)
        self.dropout = dropout
        self.scale = (nope_dim + rope_dim) ** -0.5 if scale is None else scale
        q_dim = n_heads * (nope_dim + rope_dim)
        if q_lora_rank is None:
            self.q_proj = Linear(d_model, q_dim, bias=False)
        else:
            self.q_a_proj = Linear(d_model, q_lora_rank, bias=bias)
            self.q_a_norm = build_norm("rmsnorm", q_lora_rank, norm_eps, bias=False)
            self.q_b_proj = Linear(q_lora_rank, q_dim, bias=False)
        self.q_lora_rank = q_lora_rank
        self.kv_a_proj = Linear(d_model, kv_lora_rank + rope_dim, bias=bias)
        self.kv_a_norm = build_norm("rmsnorm", kv_lora_rank, norm_eps, bias=False)
        # Read as a matrix per head, never called: a plain nn.Linear, which packed_weights leaves alone.
        self.kv_b_proj = nn.Linear(kv_lora_rank, n_heads * (nope_dim + v_dim), bias=False)
        self.out_proj = Linear(n_heads * v_dim, d_model, bias=bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                bias: torch.Tensor | None = None, is_causal: bool = False, cache: KVCache | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None, need_weights: bool = False,
                window: tuple[int, int] | None = None):
        """Attend from ``x`` ``(B, T, C)`` to itself; returns ``(y, weights)`` as
        :meth:`MultiHeadAttention.forward` does."""
        if context is not None:
            raise InputError("multi-head latent attention is self-attention only")
        B, T, _ = x.shape
        H = self.n_heads
        q = self.q_proj(x) if self.q_lora_rank is None else self.q_b_proj(self.q_a_norm(self.q_a_proj(x)))
        q_nope, q_rope = q.view(B, T, H, -1).transpose(1, 2).split([self.nope_dim, self.rope_dim], dim=-1)
        latent, k_rope = self.kv_a_proj(x).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        latent, k_rope = self.kv_a_norm(latent)[:, None], k_rope[:, None]  # (B, 1, T, ·): one head, shared
        if self.rope_interleave:
            q_rope, k_rope = _halves(q_rope, self.rope_dim), _halves(k_rope, self.rope_dim)
        if rotary is not None:
            q_rope, k_rope = apply_rotary(q_rope, *rotary), apply_rotary(k_rope, *rotary)
        w = self.kv_b_proj.weight.view(H, self.nope_dim + self.v_dim, self.kv_lora_rank)
        q = torch.cat([torch.matmul(q_nope, w[:, :self.nope_dim]), q_rope], dim=-1)  # (B, H, T, r + rope)
        k, v = torch.cat([latent, k_rope], dim=-1), latent
        if cache is not None:
            k, v = cache.update(k, v)
            mask, bias = _last_keys(mask, k.shape[2]), _last_keys(bias, k.shape[2])
        # One query per head (a decoding step): the heads become the query rows of one head, so the
        # shared keys are not copied per head. That query sees every key: no causal mask.
        fold = T == 1 and bias is None and not need_weights and window is None
        out = scaled_dot_product_attention(
            q.transpose(1, 2) if fold else q, k, v, mask=mask, bias=bias, is_causal=is_causal and not fold,
            dropout_p=self.dropout if self.training else 0.0, scale=self.scale, need_weights=need_weights,
            window=window)
        y, weights = out if need_weights else (out, None)
        y = y.transpose(1, 2) if fold else y  # (B, H, T, r)
        y = torch.matmul(y, w[:, self.nope_dim:].transpose(1, 2))  # (B, H, T, v): each head's W_v
        return self.out_proj(y.transpose(1, 2).reshape(B, T, H * self.v_dim)), weights
