"""attnkit.nn: the components every model is built from, each written once."""

from attnkit.nn.attention import MultiHeadAttention, MultiHeadLatentAttention, scaled_dot_product_attention
from attnkit.nn.block import Decoder, DecoderLayer, Encoder, EncoderLayer, LayerConfig, StackOutput
from attnkit.nn.cache import DecoderCache, KVCache
from attnkit.nn.feedforward import (
    ACTIVATIONS,
    FEEDFORWARD_ACTIVATIONS,
    GATED,
    FeedForward,
    MoEFeedForward,
    router_balance_loss,
)
from attnkit.nn.linear import Linear, packed_weights
from attnkit.nn.loss import linear_cross_entropy
from attnkit.nn.lora import LoRALinear, add_lora, merge_lora
from attnkit.nn.masks import (
    as_padding_mask,
    band_mask,
    causal_mask,
    combine_masks,
    expand_padding_mask,
    padding_mask_from_lengths,
    positions_from_padding,
)
from attnkit.nn.norm import RMSNorm, build_norm
from attnkit.nn.patch import PatchEmbedding
from attnkit.nn.pooling import POOLING, mean_pool, pool
from attnkit.nn.positional import (
    RelativePositionBias,
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    check_rope_scaling,
    relative_position_bucket,
    resize_position_grid,
    rope_frequencies,
    sinusoidal_positions,
)
from attnkit.nn.quantize import (
    Int4Linear,
    Int8Embedding,
    Int8Linear,
    QuantizedLinear,
    quantize_int4,
    quantize_int8,
)
from attnkit.nn.subsampling import ConvSubsampling

__all__ = [
    "ACTIVATIONS", "ConvSubsampling", "FEEDFORWARD_ACTIVATIONS", "GATED", "Decoder", "DecoderCache", "DecoderLayer",
    "Encoder", "EncoderLayer", "FeedForward", "Int4Linear", "Int8Embedding", "Int8Linear", "KVCache", "LayerConfig",
    "Linear", "LoRALinear", "MoEFeedForward", "QuantizedLinear",
    "MultiHeadAttention", "MultiHeadLatentAttention", "PatchEmbedding", "RMSNorm", "RelativePositionBias",
    "RotaryEmbedding", "StackOutput",
    "add_lora", "alibi_bias", "alibi_slopes", "apply_rotary", "as_padding_mask", "band_mask", "build_norm",
    "causal_mask", "combine_masks",
    "expand_padding_mask", "linear_cross_entropy", "POOLING", "mean_pool", "merge_lora", "packed_weights", "pool",
    "padding_mask_from_lengths", "positions_from_padding", "quantize_int4", "quantize_int8",
    "relative_position_bucket",
    "resize_position_grid",
    "rope_frequencies", "check_rope_scaling", "router_balance_loss", "scaled_dot_product_attention",
    "sinusoidal_positions",
]
