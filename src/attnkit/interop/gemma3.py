"""Gemma 3, text only <-> attnkit Gemma3 (``Gemma3ForCausalLM``'s layout, ``model_type``
``gemma3_text``: Gemma 3 1B and the language model of the larger ones): see
:mod:`attnkit.interop.gemma`. The text model of the multimodal checkpoints (``gemma3``) is read
by :mod:`attnkit.interop.gemma3_multimodal`."""

from __future__ import annotations

from attnkit.interop import gemma
from attnkit.models.gemma import Gemma3, Gemma3Config

MODEL_TYPE = "gemma3_text"
MODELS = {"Gemma3": Gemma3}
ARCHITECTURES = {"Gemma3ForCausalLM": "Gemma3"}
BASE_PREFIX = gemma.BASE_PREFIX
IGNORED_HF_KEYS = gemma.IGNORED_HF_KEYS
key_rules = gemma.key_rules  # Llama's keys with the four norms per layer and the q/k norms


def config_to_hf(model) -> dict | None:
    """HF ``Gemma3TextConfig`` fields, or None for a variant ``Gemma3ForCausalLM`` cannot represent
    (no query/key norms; a scaled RoPE without a base of the sliding layers' own)."""
    c: Gemma3Config = model.config
    fields = gemma.windowed_gemma_fields(c, {"qk_norm", "rope_local_base"})
    if fields is None or not c.qk_norm or (c.rope_local_base is None and c.rope_scaling is not None):
        return None
    fields["rope_parameters"] = {
        gemma.LAYER_TYPES[1]: fields["rope_parameters"],
        gemma.LAYER_TYPES[0]: {"rope_type": "default", "rope_theta": c.rope_local_base or c.rope_base},
    }
    return dict(model_type=MODEL_TYPE, **fields)


def config_from_hf(hf: dict, model_class: type) -> Gemma3Config:
    """``Gemma3Config`` from a HF Gemma 3 text config dict (HF's defaults for absent fields)."""
    defaults = Gemma3Config()
    fields = gemma.gemma_config_fields(hf, defaults, "hidden_activation")
    fields.update(gemma.rope_by_layer_type(hf, fields["n_positions"]))
    return Gemma3Config(**fields, **gemma.windowed_fields(hf, defaults))
