"""MarianMT <-> attnkit Transformer: config fields and state-dict keys (``MarianMTModel`` layout).

Marian is the paper's post-norm encoder-decoder with three differences that are config fields
of :class:`~attnkit.Transformer`: sines and cosines of the positions in two halves
(``sinusoid_layout="split"``), a ``final_logits_bias`` buffer added to the logits, and the
activation (SiLU in the released OPUS-MT checkpoints). Embedding scaling is
``scale_embedding``; generation starts from ``decoder_start_token_id`` (= pad in Marian).
Positions are a fixed table, never stored in the checkpoint.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, single_token_id
from attnkit.models.transformer import Transformer, TransformerConfig

MODEL_TYPE = "marian"
MODELS = {"Transformer": Transformer}
ARCHITECTURES = {"MarianMTModel": "Transformer"}
BASE_PREFIX = ""
IGNORED_HF_KEYS = (r"embed_positions\.weight$",)  # sinusoidal tables (recomputed)

_ACT_TO_HF = {"silu": "swish", "gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new"}
_ACT_FROM_HF = {**{v: k for k, v in _ACT_TO_HF.items()}, "silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}


def _layer_rules(stack: str, cross: bool) -> list[Rename]:
    n, h = f"{stack}.layers.{{i}}.", f"model.{stack}.layers.{{i}}."
    subs = [("attn", "self_attn"), ("cross_attn", "encoder_attn")] if cross else [("attn", "self_attn")]
    rules = []
    for p in ("weight", "bias"):
        for ours, theirs in subs:
            rules += [Rename(n + f"{ours}.{proj}.{p}", h + f"{theirs}.{proj}.{p}")
                      for proj in ("q_proj", "k_proj", "v_proj", "out_proj")]
        rules += [
            Rename(n + f"attn_norm.{p}", h + f"self_attn_layer_norm.{p}"),
            Rename(n + f"ffn.fc_in.{p}", h + f"fc1.{p}"),
            Rename(n + f"ffn.fc_out.{p}", h + f"fc2.{p}"),
            Rename(n + f"ffn_norm.{p}", h + f"final_layer_norm.{p}"),
        ]
        if cross:
            rules.append(Rename(n + f"cross_norm.{p}", h + f"encoder_attn_layer_norm.{p}"))
    return rules


def key_rules(model) -> list[Rename]:
    """The first rule for a name is the one written on save; later ones accept HF's tied copies."""
    shared = model.config.share_embeddings
    embeddings = [
        Rename("src_embed.weight", "model.shared.weight" if shared else "model.encoder.embed_tokens.weight"),
        Rename("src_embed.weight", "model.encoder.embed_tokens.weight"),
        Rename("tgt_embed.weight", "model.decoder.embed_tokens.weight"),
        Rename("lm_head.weight", "lm_head.weight"),
        Rename("final_logits_bias", "final_logits_bias"),
    ]
    return embeddings + _layer_rules("encoder", cross=False) + _layer_rules("decoder", cross=True)


def config_to_hf(model) -> dict | None:
    """HF ``MarianConfig`` fields, or None when the variant has no Marian equivalent."""
    c: TransformerConfig = model.config
    if (c.pre_norm or c.sinusoid_layout != "split" or not c.final_logits_bias or c.activation not in _ACT_TO_HF
            or c.eos_token_id is None):
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, decoder_vocab_size=c.vocab_size,
        max_position_embeddings=c.n_positions, d_model=c.d_model,
        encoder_layers=c.n_encoder_layers, decoder_layers=c.n_decoder_layers,
        encoder_attention_heads=c.n_heads, decoder_attention_heads=c.n_heads,
        encoder_ffn_dim=c.d_ff, decoder_ffn_dim=c.d_ff, activation_function=_ACT_TO_HF[c.activation],
        dropout=c.dropout, attention_dropout=c.attn_dropout, activation_dropout=c.ffn_dropout,
        scale_embedding=c.scale_embedding, share_encoder_decoder_embeddings=c.share_embeddings,
        tie_word_embeddings=c.tie_word_embeddings, pad_token_id=c.pad_token_id, eos_token_id=c.eos_token_id,
        bos_token_id=c.bos_token_id, decoder_start_token_id=c.decoder_start_token_id,
        forced_eos_token_id=c.forced_eos_token_id, is_encoder_decoder=True,
    )


def config_from_hf(hf: dict, model_class: type) -> TransformerConfig:
    """``TransformerConfig`` from a HF Marian config dict (HF's defaults for absent fields)."""
    vocab = hf.get("vocab_size", 58101)
    same = [("decoder_vocab_size", "vocab_size", vocab), ("decoder_attention_heads", "encoder_attention_heads", 16),
            ("decoder_ffn_dim", "encoder_ffn_dim", 4096)]
    for dec, enc, default in same:
        if hf.get(dec) not in (None, hf.get(enc, default)):
            raise ConfigError(f"config.json: {dec}={hf[dec]} differs from {enc}={hf.get(enc, default)}; "
                              "attnkit's Transformer uses one size for both stacks")
    act = hf.get("activation_function", "gelu")
    if act not in _ACT_FROM_HF:
        raise ConfigError(f"config.json: activation_function {act!r} is not supported; supported: {sorted(_ACT_FROM_HF)}")
    eos = single_token_id(hf, "eos_token_id", 0, "Transformer")
    pad = hf.get("pad_token_id", 58100)
    forced = single_token_id(hf, "forced_eos_token_id", 0, "Transformer")  # MarianConfig's default: OPUS-MT ends at max length on EOS
    return TransformerConfig(
        vocab_size=vocab, n_positions=hf.get("max_position_embeddings", 1024), d_model=hf.get("d_model", 1024),
        n_heads=hf.get("encoder_attention_heads", 16), d_ff=hf.get("encoder_ffn_dim", 4096),
        n_encoder_layers=hf.get("encoder_layers", 12), n_decoder_layers=hf.get("decoder_layers", 12),
        activation=_ACT_FROM_HF[act], pre_norm=False, sinusoid_layout="split",
        scale_embedding=hf.get("scale_embedding", False),
        share_embeddings=hf.get("share_encoder_decoder_embeddings", True),
        tie_word_embeddings=hf.get("tie_word_embeddings", True), final_logits_bias=True,
        dropout=hf.get("dropout", 0.1), attn_dropout=hf.get("attention_dropout", 0.0),
        ffn_dropout=hf.get("activation_dropout", 0.0), label_smoothing=0.0,
        pad_token_id=pad, bos_token_id=hf.get("bos_token_id"), eos_token_id=eos,
        decoder_start_token_id=hf.get("decoder_start_token_id", pad), forced_eos_token_id=forced,
    )
