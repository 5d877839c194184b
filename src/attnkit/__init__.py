"""attnkit: the Transformer family in one readable, fast, tested PyTorch library.

Heavy submodules load on first use, so ``import attnkit`` stays fast.
"""

from __future__ import annotations

import importlib

from attnkit.errors import AttnkitError, CheckpointError, ConfigError, DataError, InputError, TrainingError

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily, PEP 562)
_LAZY = {
    "nn": "attnkit.nn",
    "generation": "attnkit.generation",
    "Model": "attnkit.models.base",
    "ModelOutput": "attnkit.models.outputs",
    "GenerateOutput": "attnkit.models.outputs",
    "GPT": "attnkit.models.gpt",
    "GPTConfig": "attnkit.models.gpt",
    "Llama": "attnkit.models.llama",
    "LlamaConfig": "attnkit.models.llama",
    "Mistral": "attnkit.models.llama",
    "MistralConfig": "attnkit.models.llama",
    "Qwen2": "attnkit.models.llama",
    "Qwen2Config": "attnkit.models.llama",
    "Qwen3": "attnkit.models.llama",
    "Qwen3Config": "attnkit.models.llama",
    "Phi3": "attnkit.models.llama",
    "Phi3Config": "attnkit.models.llama",
    "Olmo2": "attnkit.models.llama",
    "Olmoe": "attnkit.models.llama",
    "Olmo3": "attnkit.models.llama",
    "SmolLM3": "attnkit.models.llama",
    "Glm4": "attnkit.models.llama",
    "Glm": "attnkit.models.llama",
    "SeedOss": "attnkit.models.llama",
    "Ernie4_5": "attnkit.models.llama",
    "Granite": "attnkit.models.llama",
    "StableLm": "attnkit.models.llama",
    "DeepseekV3": "attnkit.models.deepseek",
    "GPTNeo": "attnkit.models.gpt_neo",
    "OPT": "attnkit.models.opt",
    "Bloom": "attnkit.models.bloom",
    "Falcon": "attnkit.models.falcon",
    "Llama4": "attnkit.models.llama4",
    "Starcoder2": "attnkit.models.starcoder2",
    "Phi": "attnkit.models.phi",
    "Cohere": "attnkit.models.cohere",
    "GPTJ": "attnkit.models.gptj",
    "Mixtral": "attnkit.models.llama",
    "Qwen3Moe": "attnkit.models.llama",
    "Qwen2Moe": "attnkit.models.llama",
    "Qwen2MoeConfig": "attnkit.models.llama",
    "Qwen3MoeConfig": "attnkit.models.llama",
    "MixtralConfig": "attnkit.models.llama",
    "Olmo2Config": "attnkit.models.llama",
    "OlmoeConfig": "attnkit.models.llama",
    "Olmo3Config": "attnkit.models.llama",
    "SmolLM3Config": "attnkit.models.llama",
    "Glm4Config": "attnkit.models.llama",
    "GlmConfig": "attnkit.models.llama",
    "SeedOssConfig": "attnkit.models.llama",
    "Ernie4_5Config": "attnkit.models.llama",
    "GraniteConfig": "attnkit.models.llama",
    "StableLmConfig": "attnkit.models.llama",
    "DeepseekV3Config": "attnkit.models.deepseek",
    "GPTNeoConfig": "attnkit.models.gpt_neo",
    "OPTConfig": "attnkit.models.opt",
    "BloomConfig": "attnkit.models.bloom",
    "FalconConfig": "attnkit.models.falcon",
    "Llama4Config": "attnkit.models.llama4",
    "Starcoder2Config": "attnkit.models.starcoder2",
    "PhiConfig": "attnkit.models.phi",
    "CohereConfig": "attnkit.models.cohere",
    "GPTJConfig": "attnkit.models.gptj",
    "GPTNeoX": "attnkit.models.gpt_neox",
    "GPTNeoXConfig": "attnkit.models.gpt_neox",
    "Gemma": "attnkit.models.gemma",
    "GemmaConfig": "attnkit.models.gemma",
    "Gemma2": "attnkit.models.gemma",
    "Gemma2Config": "attnkit.models.gemma",
    "Gemma3": "attnkit.models.gemma",
    "Gemma3Config": "attnkit.models.gemma",
    "Transformer": "attnkit.models.transformer",
    "TransformerConfig": "attnkit.models.transformer",
    "T5": "attnkit.models.t5",
    "T5Config": "attnkit.models.t5",
    "generate": "attnkit.generation",
    "GenerationConfig": "attnkit.models.generation_config",
    "interop": "attnkit.interop",
    "Bert": "attnkit.models.bert",
    "BertConfig": "attnkit.models.bert",
    "BertForMaskedLM": "attnkit.models.bert",
    "BertForSequenceClassification": "attnkit.models.bert",
    "BertForTokenClassification": "attnkit.models.bert",
    "BertForQuestionAnswering": "attnkit.models.bert",
    "Roberta": "attnkit.models.roberta",
    "RobertaConfig": "attnkit.models.roberta",
    "RobertaForMaskedLM": "attnkit.models.roberta",
    "RobertaForSequenceClassification": "attnkit.models.roberta",
    "RobertaForTokenClassification": "attnkit.models.roberta",
    "RobertaForQuestionAnswering": "attnkit.models.roberta",
    "DistilBert": "attnkit.models.distilbert",
    "DistilBertConfig": "attnkit.models.distilbert",
    "DistilBertForMaskedLM": "attnkit.models.distilbert",
    "DistilBertForSequenceClassification": "attnkit.models.distilbert",
    "DistilBertForTokenClassification": "attnkit.models.distilbert",
    "DistilBertForQuestionAnswering": "attnkit.models.distilbert",
    "Esm": "attnkit.models.esm",
    "EsmConfig": "attnkit.models.esm",
    "EsmForMaskedLM": "attnkit.models.esm",
    "EsmForSequenceClassification": "attnkit.models.esm",
    "EsmForTokenClassification": "attnkit.models.esm",
    "ViT": "attnkit.models.vit",
    "ViTConfig": "attnkit.models.vit",
    "ViTForImageClassification": "attnkit.models.vit",
    "Whisper": "attnkit.models.whisper",
    "WhisperConfig": "attnkit.models.whisper",
    "audio": "attnkit.audio",
    "vision": "attnkit.vision",
    "ImageProcessor": "attnkit.vision",
    "embed": "attnkit.embeddings",
    "answer_question": "attnkit.pipelines",
    "classify": "attnkit.pipelines",
    "classify_tokens": "attnkit.pipelines",
    "classify_image": "attnkit.pipelines",
    "fill_mask": "attnkit.pipelines",
    "transcribe": "attnkit.generation.speech",
    "metrics": "attnkit.metrics",
    "serve": "attnkit.serve",
    "viz": "attnkit.viz",
    "from_pretrained": "attnkit.interop",
    "save_pretrained": "attnkit.interop",
    "tokenizers": "attnkit.tokenizers",
    "Tokenizer": "attnkit.tokenizers",
    "data": "attnkit.data",
    "LMDataset": "attnkit.data",
    "training": "attnkit.training",
    "Trainer": "attnkit.training",
    "TrainConfig": "attnkit.training",
}

__all__ = ["AttnkitError", "CheckpointError", "ConfigError", "DataError", "InputError", "TrainingError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__ == f"attnkit.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
