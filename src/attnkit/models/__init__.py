"""attnkit.models: thin compositions of attnkit.nn plus a config per family."""

from attnkit.models.base import Model
from attnkit.models.config import Config
from attnkit.models.gpt import GPT, GPTConfig
from attnkit.models.outputs import ModelOutput

__all__ = ["GPT", "Config", "GPTConfig", "Model", "ModelOutput"]
