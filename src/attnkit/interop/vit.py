"""ViT <-> attnkit ViT and ViTForImageClassification: config fields and state-dict keys.

Hugging Face keeps separate ``query``/``key``/``value`` projections; attnkit fuses them into
one ``qkv_proj`` (concatenated along the output dimension). The image classifier prefixes the
encoder's keys with ``vit.``; a bare ``ViTModel`` checkpoint has no prefix. The [CLS] token,
the position table ``(1, 1 + P, C)`` and the patch projection (a convolution) keep Hugging
Face's shapes. Masked-image-modelling checkpoints (``ViTForMaskedImageModeling``, whose
decoder ``encoder_stride`` sizes) are not supported.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf, labels_from_hf, labels_to_hf
from attnkit.interop.keymap import Rename, pooler_option, require_hf_settings, weight_and_bias, with_prefix
from attnkit.models.vit import ViT, ViTConfig, ViTForImageClassification

MODEL_TYPE = "vit"
MODELS = {cls.__name__: cls for cls in (ViT, ViTForImageClassification)}
ARCHITECTURES = {"ViTModel": "ViT", "ViTForImageClassification": "ViTForImageClassification"}
BASE_PREFIX = "vit."
IGNORED_HF_KEYS = ()


def _encoder_rules(pooler: bool) -> list[Rename]:
    n, h = "encoder.layers.{i}.", "encoder.layer.{i}."
    rules = [
        Rename("cls_token", "embeddings.cls_token"),
        Rename("position_embeddings", "embeddings.position_embeddings"),
        *weight_and_bias("patch_embed.proj", "embeddings.patch_embeddings.projection"),
        *weight_and_bias(n + "attn_norm", h + "layernorm_before"),
        *weight_and_bias(n + "attn.qkv_proj", tuple(h + f"attention.attention.{x}" for x in ("query", "key", "value"))),
        *weight_and_bias(n + "attn.out_proj", h + "attention.output.dense"),
        *weight_and_bias(n + "ffn_norm", h + "layernorm_after"),
        *weight_and_bias(n + "ffn.fc_in", h + "intermediate.dense"),
        *weight_and_bias(n + "ffn.fc_out", h + "output.dense"),
        *weight_and_bias("final_norm", "layernorm"),
    ]
    return rules + (weight_and_bias("pooler", "pooler.dense") if pooler else [])


def key_rules(model) -> list[Rename]:
    if isinstance(model, ViT):
        return _encoder_rules(pooler=model.pooler is not None)
    return with_prefix(_encoder_rules(pooler=False), BASE_PREFIX) + weight_and_bias("classifier", "classifier")


def model_options(model_class: type, keys) -> dict:
    """A bare ``ViTModel`` saved without its pooler (``add_pooling_layer=False``) loads as
    ``ViT(config, add_pooler=False)``."""
    return pooler_option(keys) if model_class is ViT else {}


def config_to_hf(model) -> dict:
    """HF ``ViTConfig`` fields (every attnkit ViT has an HF equivalent)."""
    c: ViTConfig = model.config
    return dict(
        model_type=MODEL_TYPE, hidden_size=c.d_model, num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
        intermediate_size=c.d_ff, hidden_act=ACT_TO_HF[c.activation], hidden_dropout_prob=c.dropout,
        attention_probs_dropout_prob=c.attn_dropout, initializer_range=c.initializer_range, layer_norm_eps=c.norm_eps,
        image_size=c.image_size if isinstance(c.image_size, int) else list(c.image_size), patch_size=c.patch_size,
        num_channels=c.num_channels, qkv_bias=c.qkv_bias,
        encoder_stride=c.patch_size, pooler_output_size=c.d_model, pooler_act="tanh",
        **labels_to_hf(c.id2label, c.problem_type),
    )


def _square_side(hf: dict, name: str, default: int):
    """``patch_size``: HF allows ``[height, width]``; attnkit's patches are square."""
    value = hf.get(name, default)
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    if isinstance(value, list):
        raise ConfigError(f"config.json: {name}={value} is not supported: attnkit's ViT takes square patches")
    return value


def config_from_hf(hf: dict, model_class: type) -> ViTConfig:
    """``ViTConfig`` from a HF ViT config dict (HF's defaults for absent fields)."""
    require_hf_settings(hf, dict(pooler_act="tanh"), "ViT")
    d_model = hf.get("hidden_size", 768)
    if hf.get("pooler_output_size") not in (None, d_model):
        raise ConfigError(f"config.json: pooler_output_size={hf['pooler_output_size']!r} is not supported by "
                          f"attnkit's ViT (needs hidden_size, {d_model!r})")
    return ViTConfig(
        image_size=hf.get("image_size", 224), patch_size=_square_side(hf, "patch_size", 16),
        num_channels=hf.get("num_channels", 3), d_model=d_model, n_layers=hf.get("num_hidden_layers", 12),
        n_heads=hf.get("num_attention_heads", 12), d_ff=hf.get("intermediate_size", 3072),
        activation=activation_from_hf(hf, "hidden_act", "gelu"), norm_eps=hf.get("layer_norm_eps", 1e-12),
        dropout=hf.get("hidden_dropout_prob", 0.0), attn_dropout=hf.get("attention_probs_dropout_prob", 0.0),
        qkv_bias=hf.get("qkv_bias", True), initializer_range=hf.get("initializer_range", 0.02), **labels_from_hf(hf),
    )
