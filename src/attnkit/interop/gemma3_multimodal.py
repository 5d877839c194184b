"""The text model of a Gemma 3 ``Gemma3ForConditionalGeneration`` checkpoint (Gemma 3 4B, 12B and
27B as released; ``model_type`` ``gemma3``) -> attnkit Gemma3: the config's ``text_config`` read
as :mod:`attnkit.interop.gemma3` reads a ``Gemma3TextConfig``, the weights under
``language_model.``; the vision tower and projector (``vision_tower.``,
``multi_modal_projector.``) are left out. attnkit saves the text model as ``Gemma3ForCausalLM``.
"""

from __future__ import annotations

from attnkit.interop import gemma3
from attnkit.interop.keymap import Rename, text_config, with_prefix
from attnkit.models.gemma import Gemma3, Gemma3Config

MODEL_TYPE = "gemma3"
MODELS = {"Gemma3": Gemma3}
ARCHITECTURES = {"Gemma3ForConditionalGeneration": "Gemma3"}
BASE_PREFIX = ""
IGNORED_HF_KEYS = (*gemma3.IGNORED_HF_KEYS, r"^vision_tower\.", r"^multi_modal_projector\.")


def key_rules(model) -> list[Rename]:
    return with_prefix(gemma3.key_rules(model), "language_model.", native=False)


def config_to_hf(model) -> None:
    """None: attnkit writes the text model in ``Gemma3ForCausalLM``'s layout (``gemma3_text``)."""
    return None


def config_from_hf(hf: dict, model_class: type) -> Gemma3Config:
    """``Gemma3Config`` from the ``text_config`` of a HF ``Gemma3Config`` dict."""
    return gemma3.config_from_hf(text_config(hf), model_class)
