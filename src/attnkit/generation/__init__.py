"""One decoding module for every generative model: greedy, sampling, beam search, streaming, and
continuous batching of concurrent decoding loops."""

from attnkit.models.generation_config import GenerationConfig
from attnkit.generation.batching import BatchedDecoding, ModelThread
from attnkit.generation.decoding import compute_transition_scores, generate, packed_for_decoding, stream
from attnkit.generation.processors import process_logits
from attnkit.generation.prompt_cache import PromptCache
from attnkit.generation.streamers import TokenIteratorStreamer

__all__ = ["BatchedDecoding", "GenerationConfig", "ModelThread", "PromptCache", "TokenIteratorStreamer",
           "compute_transition_scores", "generate", "packed_for_decoding", "process_logits", "stream"]
