"""Whisper <-> attnkit Whisper: config fields and state-dict keys
(``WhisperForConditionalGeneration`` layout; ``WhisperModel`` checkpoints load too).

The layout is BART's with Whisper's stem: ``conv1``/``conv2`` (attnkit's ``stem``), the
encoder's sinusoidal ``embed_positions`` stored as a frozen table (attnkit's
``encoder_positions``), learned decoder positions, separate q/k/v projections with no key
bias, and ``proj_out`` tied to ``model.decoder.embed_tokens``. ``WhisperModel`` keys lack the
``model.`` prefix and the head; the head is the embedding matrix either way.

transformers reads ``scale_embedding`` but never applies it, so a checkpoint's value is
ignored here too; attnkit's ``scale_embedding=True`` (no Hugging Face equivalent) is saved
in attnkit's own layout.
"""

from __future__ import annotations

import warnings

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf
from attnkit.interop.keymap import Rename, require_hf_settings, single_token_id, weight_and_bias
from attnkit.models.whisper import Whisper, WhisperConfig

MODEL_TYPE = "whisper"
MODELS = {"Whisper": Whisper}
ARCHITECTURES = {"WhisperForConditionalGeneration": "Whisper", "WhisperModel": "Whisper"}
BASE_PREFIX = "model."
IGNORED_HF_KEYS = ()


def _layer_rules(stack: str) -> list[Rename]:
    n, h = f"{stack}.layers.{{i}}.", f"{BASE_PREFIX}{stack}.layers.{{i}}."
    attentions = [("attn", "self_attn")] + ([("cross_attn", "encoder_attn")] if stack == "decoder" else [])
    rules = []
    for ours, theirs in attentions:
        rules.append(Rename(n + f"{ours}.k_proj.weight", h + f"{theirs}.k_proj.weight"))  # no key bias
        for proj in ("q_proj", "v_proj", "out_proj"):
            rules += weight_and_bias(n + f"{ours}.{proj}", h + f"{theirs}.{proj}")
    rules += weight_and_bias(n + "attn_norm", h + "self_attn_layer_norm")
    if stack == "decoder":
        rules += weight_and_bias(n + "cross_norm", h + "encoder_attn_layer_norm")
    rules += weight_and_bias(n + "ffn.fc_in", h + "fc1") + weight_and_bias(n + "ffn.fc_out", h + "fc2")
    rules += weight_and_bias(n + "ffn_norm", h + "final_layer_norm")
    return rules + weight_and_bias(f"{stack}.norm", f"{BASE_PREFIX}{stack}.layer_norm")


def key_rules(model) -> list[Rename]:
    """The first rule for a name is the one written on save; ``proj_out`` is the tied head."""
    m = BASE_PREFIX
    return [
        *weight_and_bias("stem.conv1", m + "encoder.conv1"),
        *weight_and_bias("stem.conv2", m + "encoder.conv2"),
        Rename("encoder_positions", m + "encoder.embed_positions.weight"),
        Rename("embed.weight", m + "decoder.embed_tokens.weight"),
        Rename("decoder_positions.weight", m + "decoder.embed_positions.weight"),
        *_layer_rules("encoder"),
        *_layer_rules("decoder"),
        Rename("lm_head.weight", "proj_out.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``WhisperConfig`` fields, or None for ``scale_embedding=True`` (transformers ignores the field)."""
    c: WhisperConfig = model.config
    if c.scale_embedding:
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, num_mel_bins=c.num_mel_bins, d_model=c.d_model,
        encoder_layers=c.n_encoder_layers, decoder_layers=c.n_decoder_layers, encoder_attention_heads=c.n_heads,
        decoder_attention_heads=c.n_heads, encoder_ffn_dim=c.d_ff, decoder_ffn_dim=c.d_ff,
        activation_function=ACT_TO_HF[c.activation], max_source_positions=c.max_source_positions,
        max_target_positions=c.max_target_positions, dropout=c.dropout, attention_dropout=c.attn_dropout,
        activation_dropout=c.ffn_dropout, scale_embedding=False, tie_word_embeddings=True,
        pad_token_id=c.pad_token_id, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        decoder_start_token_id=c.decoder_start_token_id, median_filter_width=c.median_filter_width,
        is_encoder_decoder=True,
    )


def config_from_hf(hf: dict, model_class: type) -> WhisperConfig:
    """``WhisperConfig`` from a HF Whisper config dict (HF's defaults for absent fields)."""
    pairs = [("decoder_attention_heads", "encoder_attention_heads", 6), ("decoder_ffn_dim", "encoder_ffn_dim", 1536)]
    for dec, enc, default in pairs:
        if hf.get(dec, default) != hf.get(enc, default):
            raise ConfigError(f"config.json: {dec}={hf.get(dec, default)} differs from {enc}={hf.get(enc, default)}; "
                              "attnkit's Whisper uses one size for both stacks")
    # What attnkit's Whisper does not implement: the audio classifier's layer weighting, and
    # LayerDrop, a training-time regulariser a fine-tuning run must not silently lose.
    require_hf_settings(hf, {"use_weighted_layer_sum": False, "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0,
                             "tie_word_embeddings": True}, "Whisper")
    if hf.get("apply_spec_augment", False):
        warnings.warn("config.json: apply_spec_augment=true: attnkit's Whisper does not apply SpecAugment when "
                      "training (inference is unaffected)", stacklevel=4)
    pad = hf.get("pad_token_id", 50256)
    return WhisperConfig(
        vocab_size=hf.get("vocab_size", 51865), num_mel_bins=hf.get("num_mel_bins", 80), d_model=hf.get("d_model", 384),
        n_heads=hf.get("encoder_attention_heads", 6), d_ff=hf.get("encoder_ffn_dim", 1536),
        n_encoder_layers=hf.get("encoder_layers", 4), n_decoder_layers=hf.get("decoder_layers", 4),
        max_source_positions=hf.get("max_source_positions", 1500),
        max_target_positions=hf.get("max_target_positions", 448),
        activation=activation_from_hf(hf, "activation_function", "gelu"),
        dropout=hf.get("dropout", 0.0), attn_dropout=hf.get("attention_dropout", 0.0),
        ffn_dropout=hf.get("activation_dropout", 0.0), pad_token_id=pad,
        bos_token_id=hf.get("bos_token_id", 50256), eos_token_id=single_token_id(hf, "eos_token_id", 50256, "Whisper"),
        decoder_start_token_id=hf.get("decoder_start_token_id", 50257),
        median_filter_width=hf.get("median_filter_width", 7),
    )
