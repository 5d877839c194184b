"""SigLIP (``SiglipModel``, ``model_type`` ``siglip``) <-> attnkit Siglip: config fields and
state-dict keys.

As CLIP's (:mod:`attnkit.interop.clip`: a flat config, fused ``qkv_proj``), without [CLS], the
LayerNorm before the vision encoder and the projections; with the text ``head``, ``logit_bias``
and the vision tower's attention-pooling head, whose ``nn.MultiheadAttention`` keeps its query,
key and value projections in one ``in_proj_weight`` (split into attnkit's ``q_proj`` and
``kv_proj``). SigLIP 2 (``siglip2``, with NaFlex resolutions) is another family, not read here.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.clip import encoder_rules, shared_setting, sub_configs
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf
from attnkit.interop.keymap import Rename, weight_and_bias
from attnkit.models.clip import Siglip, SiglipConfig

MODEL_TYPE = "siglip"
MODELS = {"Siglip": Siglip}
ARCHITECTURES = {"SiglipModel": "Siglip"}
BASE_PREFIX = ""
IGNORED_HF_KEYS = (r"\.position_ids$",)


def key_rules(model) -> list[Rename]:
    t, v, h = "text_model.", "vision_model.", "vision_model.head."
    C = model.config.vision_d_model
    rules = [
        Rename(t + "token_embedding.weight", t + "embeddings.token_embedding.weight"),
        Rename(t + "position_embedding.weight", t + "embeddings.position_embedding.weight"),
        *encoder_rules(t + "encoder", t + "encoder"),
        *weight_and_bias(t + "encoder.norm", t + "final_layer_norm"),
        *weight_and_bias(t + "head", t + "head"),
        *weight_and_bias(v + "patch_embed.proj", v + "embeddings.patch_embedding"),
        Rename(v + "position_embedding.weight", v + "embeddings.position_embedding.weight"),
        *encoder_rules(v + "encoder", v + "encoder"),
        *weight_and_bias(v + "post_norm", v + "post_layernorm"),
        Rename("logit_scale", "logit_scale"),
        Rename("logit_bias", "logit_bias"),
    ]
    if model.vision_model.head is not None:
        rules += [
            Rename(h + "probe", h + "probe"),
            *[Rename((h + f"attention.q_proj.{p}", h + f"attention.kv_proj.{p}"), h + f"attention.in_proj_{p}",
                     sizes=(C, 2 * C)) for p in ("weight", "bias")],
            *weight_and_bias(h + "attention.out_proj", h + "attention.out_proj"),
            *weight_and_bias(h + "norm", h + "layernorm"),
            *weight_and_bias(h + "mlp.fc_in", h + "mlp.fc1"),
            *weight_and_bias(h + "mlp.fc_out", h + "mlp.fc2"),
        ]
    return rules


def config_to_hf(model) -> dict:
    """HF ``SiglipConfig`` fields."""
    c: SiglipConfig = model.config
    shared = dict(hidden_act="gelu_pytorch_tanh" if c.activation == "gelu_tanh" else ACT_TO_HF[c.activation],
                  layer_norm_eps=c.norm_eps, attention_dropout=c.attn_dropout)
    text = dict(shared, vocab_size=c.vocab_size, hidden_size=c.text_d_model, num_hidden_layers=c.text_n_layers,
                num_attention_heads=c.text_n_heads, intermediate_size=c.text_d_ff,
                max_position_embeddings=c.n_positions, projection_size=c.projection_dim, pad_token_id=c.pad_token_id,
                bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id)
    vision = dict(shared, hidden_size=c.vision_d_model, num_hidden_layers=c.vision_n_layers,
                  num_attention_heads=c.vision_n_heads, intermediate_size=c.vision_d_ff, image_size=c.image_size,
                  patch_size=c.patch_size, num_channels=c.num_channels, vision_use_head=c.vision_use_head)
    return dict(model_type=MODEL_TYPE, text_config=text, vision_config=vision)


def config_from_hf(hf: dict, model_class: type) -> SiglipConfig:
    """``SiglipConfig`` from a HF ``SiglipConfig`` dict (HF's defaults for absent fields). Token
    ids outside the vocabulary (the defaults Hugging Face copied from CLIP) are dropped: SigLIP
    reads its text's last position, not a token."""
    text, vision = sub_configs(hf)
    act = shared_setting(text, vision, "hidden_act", "gelu_pytorch_tanh")
    patch, image = vision.get("patch_size", 16), vision.get("image_size", 224)
    if isinstance(patch, list) or isinstance(image, list):
        raise ConfigError(f"config.json: vision_config image_size={image!r}, patch_size={patch!r}: attnkit's SigLIP "
                          "takes square images and patches (one number each)")
    vocab, d_text = text.get("vocab_size", 32000), text.get("hidden_size", 768)
    ids = {name: text.get(name, default) for name, default in (("pad_token_id", 1), ("bos_token_id", 49406),
                                                               ("eos_token_id", 49407))}
    return SiglipConfig(
        vocab_size=vocab, n_positions=text.get("max_position_embeddings", 64), text_d_model=d_text,
        text_n_layers=text.get("num_hidden_layers", 12), text_n_heads=text.get("num_attention_heads", 12),
        text_d_ff=text.get("intermediate_size", 3072), projection_dim=text.get("projection_size") or d_text,
        image_size=image, patch_size=patch, num_channels=vision.get("num_channels", 3),
        vision_d_model=vision.get("hidden_size", 768), vision_n_layers=vision.get("num_hidden_layers", 12),
        vision_n_heads=vision.get("num_attention_heads", 12), vision_d_ff=vision.get("intermediate_size", 3072),
        vision_use_head=vision.get("vision_use_head", True), activation=activation_from_hf(dict(act=act), "act", act),
        norm_eps=shared_setting(text, vision, "layer_norm_eps", 1e-6),
        attn_dropout=shared_setting(text, vision, "attention_dropout", 0.0),
        **{name: i if isinstance(i, int) and 0 <= i < vocab else None for name, i in ids.items()},
    )
