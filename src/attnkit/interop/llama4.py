"""The text model of a Llama 4 ``Llama4ForConditionalGeneration`` checkpoint (Llama 4 Scout and
Maverick as released; ``model_type`` ``llama4``) -> attnkit Llama4: the config's
``text_config`` read as :mod:`attnkit.interop.llama4_text` reads a ``Llama4TextConfig``, the
weights under ``language_model.``; the vision encoder and projector (``vision_model.``,
``multi_modal_projector.``) are left out. attnkit saves the text model as ``Llama4ForCausalLM``.
"""

from __future__ import annotations

from attnkit.interop import llama4_text
from attnkit.interop.keymap import Rename, text_config, with_prefix
from attnkit.models.llama4 import Llama4, Llama4Config

MODEL_TYPE = "llama4"
MODELS = {"Llama4": Llama4}
ARCHITECTURES = {"Llama4ForConditionalGeneration": "Llama4"}
BASE_PREFIX = ""
IGNORED_HF_KEYS = (*llama4_text.IGNORED_HF_KEYS, r"^vision_model\.", r"^multi_modal_projector\.")


def key_rules(model) -> list[Rename]:
    return with_prefix(llama4_text.key_rules(model), "language_model.", native=False)


def config_to_hf(model) -> None:
    """None: attnkit writes the text model in ``Llama4ForCausalLM``'s layout (``llama4_text``)."""
    return None


def config_from_hf(hf: dict, model_class: type) -> Llama4Config:
    """``Llama4Config`` from the ``text_config`` of a HF ``Llama4Config`` dict."""
    return llama4_text.config_from_hf(text_config(hf), model_class)
