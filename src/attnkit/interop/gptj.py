"""GPT-J <-> attnkit GPTJ (``GPTJForCausalLM``'s layout): ``transformer.wte``,
``transformer.h.{i}.ln_1`` (the shared LayerNorm), ``attn.{q,k,v}_proj`` (fused into attnkit's
``qkv_proj``), ``attn.out_proj``, ``mlp.fc_in``/``fc_out``, ``transformer.ln_f`` and ``lm_head``
with its bias. Older checkpoints' attention buffers (``attn.bias``, ``attn.masked_bias``) are
dropped. Config: ``n_embd``, ``n_layer``, ``n_head``, ``rotary_dim``, ``n_inner``,
``activation_function``, ``layer_norm_epsilon``, the dropouts.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, weight_and_bias
from attnkit.models.gptj import GPTJ, GPTJConfig

MODEL_TYPE = "gptj"
MODELS = {"GPTJ": GPTJ}
ARCHITECTURES = {"GPTJForCausalLM": "GPTJ"}
BASE_PREFIX = "transformer."
IGNORED_HF_KEYS = (r"attn\.bias$", r"attn\.masked_bias$")
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu"}
_VARIANTS = {"rotary_dim", "rope_interleave", "parallel_residual", "shared_norm", "qkv_bias", "attn_out_bias",
             "lm_head_bias"}


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "transformer.h.{i}."
    return [
        Rename("wte.weight", "transformer.wte.weight"),
        Rename(n + "attn.qkv_proj.weight", tuple(h + f"attn.{x}_proj.weight" for x in "qkv")),
        Rename(n + "attn.out_proj.weight", h + "attn.out_proj.weight"),
        *weight_and_bias(n + "attn_norm", h + "ln_1"),
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.fc_in"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.fc_out"),
        *weight_and_bias("decoder.norm", "transformer.ln_f"),
        *weight_and_bias("lm_head", "lm_head"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``GPTJConfig`` fields, or None for a variant ``GPTJForCausalLM`` cannot represent."""
    c: GPTJConfig = model.config
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu"}.get(c.activation)
    if (c.positional != "rotary" or c.norm != "layernorm" or not c.bias or act is None or c.qkv_bias is not False
            or c.attn_out_bias is not False or not (c.lm_head_bias and c.rope_interleave and c.parallel_residual
                                                     and c.shared_norm) or c.n_kv_heads not in (None, c.n_heads)
            or c.head_dim not in (None, c.d_model // c.n_heads) or c.rope_base != 10000.0 or c.rope_scaling
            or c.variants() - _VARIANTS):
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.d_model,
        n_layer=c.n_layers, n_head=c.n_heads, rotary_dim=c.rotary_dim or c.dim_per_head, n_inner=c.d_ff,
        activation_function=act, layer_norm_epsilon=c.norm_eps, resid_pdrop=c.dropout, embd_pdrop=c.dropout,
        attn_pdrop=c.attn_dropout, initializer_range=c.initializer_range, tie_word_embeddings=c.tie_word_embeddings,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
    )


def config_from_hf(hf: dict, model_class: type) -> GPTJConfig:
    """``GPTJConfig`` from a HF GPT-J config dict (HF's defaults for absent fields)."""
    d = GPTJConfig()
    get = hf_getter(hf)

    act = get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ConfigError(f"config.json: activation_function={act!r} is not supported; supported: "
                          f"{sorted(_ACTIVATIONS)}")
    width, heads = get("n_embd", d.d_model), get("n_head", d.n_heads)
    rotary = get("rotary_dim", d.rotary_dim)
    return GPTJConfig(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=get("n_positions", d.n_positions), d_model=width,
        n_layers=get("n_layer", d.n_layers), n_heads=heads, d_ff=hf.get("n_inner"),
        rotary_dim=None if rotary == width // heads else rotary, activation=_ACTIVATIONS[act],
        norm_eps=get("layer_norm_epsilon", d.norm_eps), dropout=float(get("resid_pdrop", 0.0)),
        attn_dropout=float(get("attn_pdrop", 0.0)), tie_word_embeddings=bool(get("tie_word_embeddings", False)),
        initializer_range=get("initializer_range", d.initializer_range),
        bos_token_id=hf.get("bos_token_id", d.bos_token_id),
        eos_token_id=first_token_id(hf, "eos_token_id", d.eos_token_id), pad_token_id=hf.get("pad_token_id"),
    )
