"""One decoding module for every generative model: greedy, sampling, beam search, streaming."""

from attnkit.models.generation_config import GenerationConfig
from attnkit.generation.decoding import generate, stream
from attnkit.generation.processors import process_logits
from attnkit.generation.streamers import TokenIteratorStreamer

__all__ = ["GenerationConfig", "TokenIteratorStreamer", "generate", "process_logits", "stream"]
