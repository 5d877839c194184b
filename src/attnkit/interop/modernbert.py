"""ModernBERT <-> attnkit ModernBert and heads: config fields and state-dict keys.

Keys: ``embeddings.tok_embeddings``/``norm``, ``layers.{i}.attn_norm`` (none on layer 0),
``attn.Wqkv`` (queries, keys, values: attnkit's ``qkv_proj`` as it is), ``attn.Wo``,
``mlp_norm``, ``mlp.Wi`` (the GeGLU's two halves, split into attnkit's ``fc_gate``, the
activated one, and ``fc_in``), ``mlp.Wo``, ``final_norm``; head models prefix them with
``model.`` and add ``head.dense``/``head.norm``, then the MLM ``decoder`` (tied, with its bias) or
the ``classifier``.

Config: ``layer_types`` (or the older ``global_attn_every_n_layers``) must put a global layer
every n layers from the first; ``rope_parameters`` (or ``global_rope_theta``/``local_rope_theta``)
give the two bases, default RoPE only; ``local_attention``; the bias and dropout fields;
``classifier_pooling``. ``sparse_prediction`` (the MLM loss over the masked positions alone)
gives the same loss; attnkit returns every position's logits.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import labels_from_hf, labels_to_hf
from attnkit.interop.keymap import Rename, hf_getter, single_token_id, weight_and_bias, with_prefix
from attnkit.models.modernbert import (GATED_BY_ACTIVATION, ModernBert, ModernBertConfig, ModernBertForMaskedLM,
                                       ModernBertForSequenceClassification, ModernBertForTokenClassification)

MODEL_TYPE = "modernbert"
MODELS = {cls.__name__: cls for cls in (ModernBert, ModernBertForMaskedLM, ModernBertForSequenceClassification,
                                        ModernBertForTokenClassification)}
ARCHITECTURES = {
    "ModernBertModel": "ModernBert", "ModernBertForMaskedLM": "ModernBertForMaskedLM",
    "ModernBertForSequenceClassification": "ModernBertForSequenceClassification",
    "ModernBertForTokenClassification": "ModernBertForTokenClassification",
}
BASE_PREFIX = "model."
IGNORED_HF_KEYS = ()
_ACT_FROM_HF = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "silu": "silu",
                "relu": "relu"}
_ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "silu": "silu", "relu": "relu"}


def _encoder_rules() -> list[Rename]:
    n, h = "encoder.layers.{i}.", "layers.{i}."
    return [
        Rename("tok_embeddings.weight", "embeddings.tok_embeddings.weight"),
        *weight_and_bias("embed_norm", "embeddings.norm"),
        *weight_and_bias(n + "attn_norm", h + "attn_norm"),
        *weight_and_bias(n + "attn.qkv_proj", h + "attn.Wqkv"),
        *weight_and_bias(n + "attn.out_proj", h + "attn.Wo"),
        *weight_and_bias(n + "ffn_norm", h + "mlp_norm"),
        *[Rename((n + f"ffn.fc_gate.{p}", n + f"ffn.fc_in.{p}"), h + f"mlp.Wi.{p}") for p in ("weight", "bias")],
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.Wo"),
        *weight_and_bias("encoder.norm", "final_norm"),
    ]


_HEAD = [*weight_and_bias("head.dense", "head.dense"), *weight_and_bias("head.norm", "head.norm")]
_HEAD_RULES = {
    ModernBertForMaskedLM: [*_HEAD, *weight_and_bias("decoder", "decoder")],  # tied weight: an equal copy is accepted
    ModernBertForSequenceClassification: [*_HEAD, *weight_and_bias("classifier", "classifier")],
    ModernBertForTokenClassification: [*_HEAD, *weight_and_bias("classifier", "classifier")],
}


def key_rules(model) -> list[Rename]:
    if isinstance(model, ModernBert):
        return _encoder_rules()
    return with_prefix(_encoder_rules(), BASE_PREFIX) + next(r for cls, r in _HEAD_RULES.items()
                                                            if isinstance(model, cls))


def config_to_hf(model) -> dict:
    """HF ``ModernBertConfig`` fields (every attnkit ModernBERT has an HF equivalent)."""
    c: ModernBertConfig = model.config
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, hidden_activation=_ACT_TO_HF[c.activation],
        max_position_embeddings=c.n_positions, initializer_range=c.initializer_range, norm_eps=c.norm_eps,
        norm_bias=c.norm_bias, attention_bias=c.bias, mlp_bias=c.bias, attention_dropout=c.attn_dropout,
        embedding_dropout=c.embedding_dropout, mlp_dropout=c.mlp_dropout,
        layer_types=["sliding_attention" if i in c.local_layers else "full_attention" for i in range(c.n_layers)],
        local_attention=c.local_attention,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": c.global_rope_theta},
                         "sliding_attention": {"rope_type": "default", "rope_theta": c.local_rope_theta}},
        classifier_pooling=c.classifier_pooling, classifier_dropout=c.classifier_dropout,
        classifier_bias=c.head_bias, classifier_activation=_ACT_TO_HF[c.head_activation],
        decoder_bias=c.decoder_bias, pad_token_id=c.pad_token_id, cls_token_id=c.cls_token_id,
        sep_token_id=c.sep_token_id, bos_token_id=c.cls_token_id, eos_token_id=c.sep_token_id,
        tie_word_embeddings=True, **labels_to_hf(c.id2label, c.problem_type),
    )


def _activation(hf: dict, field: str) -> str:
    act = hf.get(field, "gelu")
    if act not in _ACT_FROM_HF:
        raise ConfigError(f"config.json: {field} {act!r} is not supported; supported: {sorted(_ACT_FROM_HF)}")
    return _ACT_FROM_HF[act]


def _global_every(hf: dict, n_layers: int) -> int:
    """n: layers 0, n, 2n, ... are global, from ``layer_types`` or ``global_attn_every_n_layers``."""
    types = hf.get("layer_types")
    every = hf.get("global_attn_every_n_layers", 3)
    if types is None:
        return every
    globals_ = [i for i, t in enumerate(types or []) if t == "full_attention"] if isinstance(types, list) else []
    every = globals_[1] - globals_[0] if len(globals_) > 1 else max(n_layers, 1)
    expected = ["sliding_attention" if i % every else "full_attention" for i in range(n_layers)]
    if types != expected:
        raise ConfigError(f"config.json: layer_types must put a full_attention layer every n layers from the first "
                          f"(the others sliding_attention), got {types!r}")
    return every


def _rope_bases(hf: dict) -> tuple[float, float]:
    rope = hf.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise ConfigError(f"config.json: rope_parameters must be an object, got {rope!r}")
    bases = []
    for kind, legacy, default in (("full_attention", "global_rope_theta", 160_000.0),
                                  ("sliding_attention", "local_rope_theta", 10_000.0)):
        part = rope.get(kind) or {}
        if part.get("rope_type", "default") != "default" or hf.get("rope_scaling"):
            raise ConfigError(f"config.json: ModernBERT's {kind} rope_type {part.get('rope_type')!r} is not supported "
                              "(default RoPE only)")
        bases.append(float(part.get("rope_theta", hf.get(legacy, default))))
    return bases[0], bases[1]


def config_from_hf(hf: dict, model_class: type) -> ModernBertConfig:
    """``ModernBertConfig`` from a HF ModernBERT config dict (HF's defaults for absent fields)."""
    d = ModernBertConfig()
    get = hf_getter(hf)
    if hf.get("attention_bias", False) != hf.get("mlp_bias", False):
        raise ConfigError("config.json: attention_bias and mlp_bias must agree for attnkit's ModernBert")
    n_layers = get("num_hidden_layers", d.n_layers)
    global_rope, local_rope = _rope_bases(hf)
    act = _activation(hf, "hidden_activation")
    if act not in GATED_BY_ACTIVATION:
        raise ConfigError(f"config.json: hidden_activation {hf.get('hidden_activation')!r} has no gated form")
    return ModernBertConfig(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=get("max_position_embeddings", d.n_positions),
        d_model=get("hidden_size", d.d_model), n_layers=n_layers, n_heads=get("num_attention_heads", d.n_heads),
        d_ff=get("intermediate_size", d.d_ff), activation=act, norm_eps=get("norm_eps", d.norm_eps),
        bias=bool(hf.get("attention_bias", False)), norm_bias=bool(hf.get("norm_bias", False)),
        global_every=_global_every(hf, n_layers), local_attention=get("local_attention", d.local_attention),
        global_rope_theta=global_rope, local_rope_theta=local_rope,
        embedding_dropout=float(hf.get("embedding_dropout", 0.0)), attn_dropout=float(hf.get("attention_dropout", 0.0)),
        mlp_dropout=float(hf.get("mlp_dropout", 0.0)), head_bias=bool(hf.get("classifier_bias", False)),
        head_activation=_activation(hf, "classifier_activation"), decoder_bias=bool(hf.get("decoder_bias", True)),
        classifier_pooling=hf.get("classifier_pooling", "cls"),
        classifier_dropout=float(hf.get("classifier_dropout", 0.0)),
        initializer_range=get("initializer_range", d.initializer_range), pad_token_id=hf.get("pad_token_id", 50283),
        cls_token_id=hf.get("cls_token_id", 50281),
        sep_token_id=single_token_id(hf, "sep_token_id", 50282, "ModernBert"), **labels_from_hf(hf),
    )
