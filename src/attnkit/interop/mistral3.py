"""The text model of a Mistral 3 ``Mistral3ForConditionalGeneration`` checkpoint (Mistral Small
3.1 and 3.2; ``model_type`` ``mistral3``) -> attnkit Mistral: the config's ``text_config`` (a
``mistral`` config) read by :mod:`attnkit.interop.mistral`, the weights under
``language_model.``; the vision tower and projector are left out. attnkit saves the text model as
``MistralForCausalLM``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import mistral
from attnkit.interop.keymap import Rename, text_config, with_prefix
from attnkit.models.llama import Mistral, MistralConfig

MODEL_TYPE = "mistral3"
MODELS = {"Mistral": Mistral}
ARCHITECTURES = {"Mistral3ForConditionalGeneration": "Mistral"}
BASE_PREFIX = ""
IGNORED_HF_KEYS = (*mistral.IGNORED_HF_KEYS, r"^vision_tower\.", r"^multi_modal_projector\.")


def key_rules(model) -> list[Rename]:
    return with_prefix(mistral.key_rules(model), "language_model.", native=False)


def config_to_hf(model) -> None:
    """None: attnkit writes the text model in ``MistralForCausalLM``'s layout (``mistral``)."""
    return None


def config_from_hf(hf: dict, model_class: type) -> MistralConfig:
    """``MistralConfig`` from the ``text_config`` of a HF ``Mistral3Config`` dict."""
    text = text_config(hf)
    if text.get("model_type", "mistral") != "mistral":
        raise ConfigError(f"config.json: a mistral3 text_config of model_type {text['model_type']!r} is not "
                          "supported (attnkit reads 'mistral' text models)")
    return mistral.config_from_hf(text, model_class)
