"""T5 <-> attnkit T5: config fields and state-dict keys (``T5ForConditionalGeneration`` layout).

Hugging Face keeps separate ``q``/``k``/``v`` projections; attnkit fuses them into one
``qkv_proj`` (and ``k``/``v`` of cross-attention into ``kv_proj``). The relative position bias
lives in block 0 of each stack there and in the model here (``encoder_position_bias``,
``decoder_position_bias``). ``feed_forward_proj`` names the feed-forward: ``wi`` is
``fc_in``; a gated one has ``wi_0`` (through the activation, ``fc_gate``) and ``wi_1``
(linear, ``fc_in``).

Tying and scaling: transformers 4 read ``tie_word_embeddings`` as both "the LM head is the
embedding matrix" and "scale the decoder output by d_model^-1/2" (T5 v1.0; false for v1.1 and
Flan-T5). transformers 5 keeps the scaling as ``scale_decoder_outputs``, writes
``tie_word_embeddings: true`` for every T5, and unties the head when the checkpoint holds an
``lm_head.weight`` that differs from ``shared.weight``; attnkit reads both and does the same
(:func:`config_from_state`), and writes both fields, so either version loads its checkpoints.
"""

from __future__ import annotations

import torch

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, single_token_id
from attnkit.models.t5 import T5, T5Config

MODEL_TYPE = "t5"
MODELS = {"T5": T5}
ARCHITECTURES = {"T5ForConditionalGeneration": "T5"}
BASE_PREFIX = ""
# Old checkpoints carry an unused cross-attention bias; transformers drops it too.
IGNORED_HF_KEYS = (r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",)

# attnkit activation <-> HF ``feed_forward_proj`` ("gated-gelu" is GELU with the tanh approximation)
_ACT_TO_HF = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new", "silu": "silu", "geglu_tanh": "gated-gelu",
              "reglu": "gated-relu", "swiglu": "gated-silu"}
_ACT_FROM_HF = {**{v: k for k, v in _ACT_TO_HF.items()}, "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu",
                "gated-gelu_new": "geglu_tanh", "gated-gelu_pytorch_tanh": "geglu_tanh", "gated-swish": "swiglu"}


def _attention(native: str, hf: str) -> list[Rename]:
    """Fused projections of one attention module from HF's q, k, v, o."""
    fused = [Rename(f"{native}.qkv_proj.weight", tuple(f"{hf}.{p}.weight" for p in "qkv"))] if "SelfAttention" in hf \
        else [Rename(f"{native}.q_proj.weight", f"{hf}.q.weight"),
              Rename(f"{native}.kv_proj.weight", (f"{hf}.k.weight", f"{hf}.v.weight"))]
    return fused + [Rename(f"{native}.out_proj.weight", f"{hf}.o.weight")]


def _stack_rules(stack: str, gated: bool) -> list[Rename]:
    n, h = f"{stack}.layers.{{i}}.", f"{stack}.block.{{i}}.layer."
    ffn = 2 if stack == "decoder" else 1  # HF's sublayer index: self-attention, [cross-attention,] feed-forward
    rules = [
        Rename(n + "attn_norm.weight", h + "0.layer_norm.weight"),
        *_attention(n + "attn", h + "0.SelfAttention"),
        Rename(n + "ffn_norm.weight", h + f"{ffn}.layer_norm.weight"),
        Rename(n + "ffn.fc_out.weight", h + f"{ffn}.DenseReluDense.wo.weight"),
        Rename(f"{stack}.norm.weight", f"{stack}.final_layer_norm.weight"),
        Rename(f"{stack}_position_bias.embedding.weight", f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
    ]
    if gated:
        rules += [Rename(n + "ffn.fc_gate.weight", h + f"{ffn}.DenseReluDense.wi_0.weight"),
                  Rename(n + "ffn.fc_in.weight", h + f"{ffn}.DenseReluDense.wi_1.weight")]
    else:
        rules.append(Rename(n + "ffn.fc_in.weight", h + f"{ffn}.DenseReluDense.wi.weight"))
    if stack == "decoder":
        rules += [Rename(n + "cross_norm.weight", h + "1.layer_norm.weight"), *_attention(n + "cross_attn", h + "1.EncDecAttention")]
    return rules


def key_rules(model) -> list[Rename]:
    """The first rule for a name is the one written on save; later ones accept HF's tied copies."""
    gated = model.config.activation in ("geglu_tanh", "reglu", "swiglu")
    embeddings = [
        Rename("embed.weight", "shared.weight"),
        Rename("embed.weight", "encoder.embed_tokens.weight"),
        Rename("embed.weight", "decoder.embed_tokens.weight"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]
    return embeddings + _stack_rules("encoder", gated) + _stack_rules("decoder", gated)


def config_to_hf(model) -> dict:
    """HF ``T5Config`` fields (every attnkit T5 has an HF equivalent)."""
    c: T5Config = model.config
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.head_dim, d_ff=c.d_ff,
        num_layers=c.n_encoder_layers, num_decoder_layers=c.n_decoder_layers, num_heads=c.n_heads,
        relative_attention_num_buckets=c.num_buckets, relative_attention_max_distance=c.max_distance,
        dropout_rate=c.dropout, layer_norm_epsilon=c.norm_eps, initializer_factor=1.0,
        feed_forward_proj=_ACT_TO_HF[c.activation], tie_word_embeddings=c.tie_word_embeddings,
        scale_decoder_outputs=c.scales_decoder_outputs, pad_token_id=c.pad_token_id, eos_token_id=c.eos_token_id,
        decoder_start_token_id=c.decoder_start_token_id, is_encoder_decoder=True,
    )


def config_from_hf(hf: dict, model_class: type) -> T5Config:
    """``T5Config`` from a HF T5 config dict (HF's defaults for absent fields)."""
    proj = hf.get("feed_forward_proj", "relu")
    if not isinstance(proj, str) or proj not in _ACT_FROM_HF:
        raise ConfigError(f"config.json: feed_forward_proj {proj!r} is not supported by attnkit's T5; "
                          f"supported: {sorted(_ACT_FROM_HF)}")
    tie = hf.get("tie_word_embeddings", True)
    scale = hf.get("scale_decoder_outputs")  # transformers 5; absent: tie_word_embeddings decides (transformers 4)
    n_layers = hf.get("num_layers", 6)
    pad = hf.get("pad_token_id", 0)
    return T5Config(
        vocab_size=hf.get("vocab_size", 32128), d_model=hf.get("d_model", 512), head_dim=hf.get("d_kv", 64),
        n_heads=hf.get("num_heads", 8), d_ff=hf.get("d_ff", 2048), n_encoder_layers=n_layers,
        n_decoder_layers=hf.get("num_decoder_layers") or n_layers, activation=_ACT_FROM_HF[proj],
        num_buckets=hf.get("relative_attention_num_buckets", 32),
        max_distance=hf.get("relative_attention_max_distance", 128), norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        dropout=hf.get("dropout_rate", 0.1), tie_word_embeddings=tie,
        scale_decoder_outputs=None if scale in (None, tie) else scale, pad_token_id=pad,
        eos_token_id=single_token_id(hf, "eos_token_id", 1, "T5"),
        decoder_start_token_id=hf.get("decoder_start_token_id", pad),
    )


def config_from_state(config: T5Config, state: dict[str, torch.Tensor]) -> T5Config:
    """An ``lm_head.weight`` that differs from ``shared.weight`` unties the LM head (the scaling
    stays what config.json says), as in transformers 5, which saves Flan-T5 with
    ``tie_word_embeddings: true`` and its own head."""
    head, shared = state.get("lm_head.weight"), state.get("shared.weight")
    if not config.tie_word_embeddings or head is None or shared is None:
        return config
    if head.shape == shared.shape and torch.equal(head, shared.to(head.dtype)):
        return config
    return config.replace(tie_word_embeddings=False, scale_decoder_outputs=config.scales_decoder_outputs or None)
