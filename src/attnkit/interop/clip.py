"""CLIP (``CLIPModel``, ``model_type`` ``clip``) <-> attnkit Clip: config fields and state-dict keys.

Hugging Face nests a ``text_config`` and a ``vision_config``; attnkit's config is flat
(``text_*`` / ``vision_*`` sizes, one activation and LayerNorm epsilon, which the released
checkpoints share). Its separate ``q_proj``/``k_proj``/``v_proj`` are fused into ``qkv_proj``;
``text_model.``, ``vision_model.``, the projections and ``logit_scale`` keep their names.
Older checkpoints' ``position_ids`` buffers are ignored.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf
from attnkit.interop.keymap import Rename, weight_and_bias
from attnkit.models.clip import Clip, ClipConfig

MODEL_TYPE = "clip"
MODELS = {"Clip": Clip}
ARCHITECTURES = {"CLIPModel": "Clip"}
BASE_PREFIX = ""
IGNORED_HF_KEYS = (r"\.position_ids$",)


def encoder_rules(native: str, hf: str) -> list[Rename]:
    """One pre-norm encoder's layers: CLIP's ``layer_norm1``, ``self_attn``, ``layer_norm2``,
    ``mlp.fc1``/``fc2`` (SigLIP's too)."""
    n, h = f"{native}.layers.{{i}}.", f"{hf}.layers.{{i}}."
    return [
        *weight_and_bias(n + "attn_norm", h + "layer_norm1"),
        *weight_and_bias(n + "attn.qkv_proj", tuple(h + f"self_attn.{x}_proj" for x in "qkv")),
        *weight_and_bias(n + "attn.out_proj", h + "self_attn.out_proj"),
        *weight_and_bias(n + "ffn_norm", h + "layer_norm2"),
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.fc1"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.fc2"),
    ]


def key_rules(model) -> list[Rename]:
    t, v = "text_model.", "vision_model."
    return [
        Rename(t + "token_embedding.weight", t + "embeddings.token_embedding.weight"),
        Rename(t + "position_embedding.weight", t + "embeddings.position_embedding.weight"),
        *encoder_rules(t + "encoder", t + "encoder"),
        *weight_and_bias(t + "encoder.norm", t + "final_layer_norm"),
        Rename(v + "class_embedding", v + "embeddings.class_embedding"),
        Rename(v + "patch_embed.proj.weight", v + "embeddings.patch_embedding.weight"),
        Rename(v + "position_embedding.weight", v + "embeddings.position_embedding.weight"),
        *weight_and_bias(v + "pre_norm", v + "pre_layrnorm"),
        *encoder_rules(v + "encoder", v + "encoder"),
        *weight_and_bias(v + "post_norm", v + "post_layernorm"),
        Rename("text_projection.weight", "text_projection.weight"),
        Rename("visual_projection.weight", "visual_projection.weight"),
        Rename("logit_scale", "logit_scale"),
    ]


def config_to_hf(model) -> dict:
    """HF ``CLIPConfig`` fields."""
    c: ClipConfig = model.config
    shared = dict(hidden_act=ACT_TO_HF[c.activation], layer_norm_eps=c.norm_eps, attention_dropout=c.attn_dropout,
                  initializer_range=c.initializer_range, projection_dim=c.projection_dim)
    text = dict(shared, vocab_size=c.vocab_size, hidden_size=c.text_d_model, num_hidden_layers=c.text_n_layers,
                num_attention_heads=c.text_n_heads, intermediate_size=c.text_d_ff, max_position_embeddings=c.n_positions,
                pad_token_id=c.pad_token_id, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id)
    vision = dict(shared, hidden_size=c.vision_d_model, num_hidden_layers=c.vision_n_layers,
                  num_attention_heads=c.vision_n_heads, intermediate_size=c.vision_d_ff, image_size=c.image_size,
                  patch_size=c.patch_size, num_channels=c.num_channels)
    return dict(model_type=MODEL_TYPE, text_config=text, vision_config=vision, projection_dim=c.projection_dim,
                logit_scale_init_value=c.logit_scale_init)


def sub_configs(hf: dict) -> tuple[dict, dict]:
    """``(text_config, vision_config)`` of a dual encoder's HF config, checked."""
    text, vision = hf.get("text_config") or {}, hf.get("vision_config") or {}
    if not isinstance(text, dict) or not isinstance(vision, dict):
        raise ConfigError(f"config.json: a {hf.get('model_type')} config's text_config and vision_config must be "
                          "objects")
    return text, vision


def shared_setting(text: dict, vision: dict, name: str, default):
    """A setting attnkit's config holds once: the text and vision configs must agree on it."""
    a, b = text.get(name, default), vision.get(name, default)
    if a != b:
        raise ConfigError(f"config.json: text_config.{name}={a!r} and vision_config.{name}={b!r} differ; attnkit's "
                          f"dual encoders take one {name}")
    return a


def config_from_hf(hf: dict, model_class: type) -> ClipConfig:
    """``ClipConfig`` from a HF ``CLIPConfig`` dict (HF's defaults for absent fields)."""
    text, vision = sub_configs(hf)
    act = shared_setting(text, vision, "hidden_act", "quick_gelu")
    patch = vision.get("patch_size", 32)
    image = vision.get("image_size", 224)
    if isinstance(patch, list) or isinstance(image, list):
        raise ConfigError(f"config.json: vision_config image_size={image!r}, patch_size={patch!r}: attnkit's CLIP "
                          "takes square images and patches (one number each)")
    return ClipConfig(
        vocab_size=text.get("vocab_size", 49408), n_positions=text.get("max_position_embeddings", 77),
        text_d_model=text.get("hidden_size", 512), text_n_layers=text.get("num_hidden_layers", 12),
        text_n_heads=text.get("num_attention_heads", 8), text_d_ff=text.get("intermediate_size", 2048),
        image_size=image, patch_size=patch, num_channels=vision.get("num_channels", 3),
        vision_d_model=vision.get("hidden_size", 768), vision_n_layers=vision.get("num_hidden_layers", 12),
        vision_n_heads=vision.get("num_attention_heads", 12), vision_d_ff=vision.get("intermediate_size", 3072),
        projection_dim=hf.get("projection_dim", 512), activation=activation_from_hf(dict(act=act), "act", act),
        norm_eps=shared_setting(text, vision, "layer_norm_eps", 1e-5),
        attn_dropout=shared_setting(text, vision, "attention_dropout", 0.0),
        logit_scale_init=hf.get("logit_scale_init_value", 2.6592),
        initializer_range=text.get("initializer_range", 0.02), pad_token_id=text.get("pad_token_id", 1),
        bos_token_id=text.get("bos_token_id", 49406), eos_token_id=text.get("eos_token_id", 49407),
    )
