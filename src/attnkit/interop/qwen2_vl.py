"""The text model of a Qwen2-VL / Qwen2.5-VL checkpoint (``Qwen2VLForConditionalGeneration``,
``Qwen2_5_VLForConditionalGeneration``; ``model_type`` ``qwen2_vl``, ``qwen2_5_vl``) -> attnkit
Qwen2, for text: the language model's config (``text_config``, or the top level in the released
configs) read by :mod:`attnkit.interop.qwen2`, its weights under ``model.`` and ``lm_head``; the
vision encoder (``visual.``) is left out. Multimodal RoPE (``mrope``) gives every position the
same time, height and width index for text, which is the ordinary rotary embedding: it is read as
that. attnkit saves the text model as ``Qwen2ForCausalLM``.
"""

from __future__ import annotations

from attnkit.interop import llama, qwen2
from attnkit.interop.keymap import Rename
from attnkit.models.llama import Qwen2, Qwen2Config

MODEL_TYPE = "qwen2_5_vl"  # and qwen2_vl: one layout
MODELS = {"Qwen2": Qwen2}
ARCHITECTURES = {"Qwen2_5_VLForConditionalGeneration": "Qwen2", "Qwen2VLForConditionalGeneration": "Qwen2"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = (*qwen2.IGNORED_HF_KEYS, r"^visual\.", r"^model\.visual\.")


def key_rules(model) -> list[Rename]:
    return qwen2.key_rules(model)


def config_to_hf(model) -> None:
    """None: attnkit writes the text model in ``Qwen2ForCausalLM``'s layout (``qwen2``)."""
    return None


def config_from_hf(hf: dict, model_class: type) -> Qwen2Config:
    """``Qwen2Config`` from a HF Qwen2-VL config dict: its ``text_config`` (or its top level),
    with multimodal RoPE read as the ordinary one."""
    text = {**hf, **(hf.get("text_config") or {})}
    for key in ("rope_parameters", "rope_scaling"):
        params = text.get(key)
        if isinstance(params, dict) and params.get("rope_type", params.get("type")) in ("mrope", "default"):
            text[key] = {k: v for k, v in params.items() if k not in ("type", "rope_type", "mrope_section")}
    return qwen2.config_from_hf(text, model_class)
