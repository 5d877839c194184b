"""attnkit.models: thin compositions of attnkit.nn plus a config per family."""

from attnkit.models.base import Model
from attnkit.models.bert import (
    Bert,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from attnkit.models.bloom import Bloom, BloomConfig
from attnkit.models.cohere import Cohere, Cohere2, Cohere2Config, CohereConfig
from attnkit.models.config import Config
from attnkit.models.deepseek import (DeepseekV2, DeepseekV2Config, DeepseekV3, DeepseekV3Config, Dots1, Dots1Config,
                                     Glm4Moe, Glm4MoeConfig)
from attnkit.models.distilbert import (
    DistilBert,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
)
from attnkit.models.esm import Esm, EsmConfig, EsmForMaskedLM, EsmForSequenceClassification, EsmForTokenClassification
from attnkit.models.falcon import Falcon, FalconConfig
from attnkit.models.gemma import Gemma, Gemma2, Gemma2Config, Gemma3, Gemma3Config, GemmaConfig
from attnkit.models.gpt import GPT, GPTConfig
from attnkit.models.gpt_bigcode import GPTBigCode, GPTBigCodeConfig
from attnkit.models.gpt_neo import GPTNeo, GPTNeoConfig
from attnkit.models.modernbert import (ModernBert, ModernBertConfig, ModernBertForMaskedLM,
                                       ModernBertForSequenceClassification, ModernBertForTokenClassification)
from attnkit.models.gpt_neox import GPTNeoX, GPTNeoXConfig
from attnkit.models.gpt_oss import GptOss, GptOssConfig
from attnkit.models.gptj import GPTJ, GPTJConfig
from attnkit.models.llama import (
    Arcee,
    ArceeConfig,
    Ernie4_5,
    Ernie4_5Config,
    Ernie4_5Moe,
    Ernie4_5MoeConfig,
    Exaone4,
    Exaone4Config,
    Glm,
    Glm4,
    Glm4Config,
    GlmConfig,
    Granite,
    GraniteConfig,
    GraniteMoe,
    GraniteMoeConfig,
    Helium,
    HunYuanDense,
    HunYuanDenseConfig,
    HeliumConfig,
    Llama,
    LlamaConfig,
    Ministral,
    MinistralConfig,
    Mistral,
    MistralConfig,
    Mixtral,
    MixtralConfig,
    Nemotron,
    NemotronConfig,
    Olmo,
    Olmo2,
    Olmo2Config,
    Olmo3,
    Olmo3Config,
    Olmoe,
    OlmoeConfig,
    Phi3,
    Phi3Config,
    Qwen2,
    Qwen2Config,
    Qwen2Moe,
    Qwen2MoeConfig,
    Qwen3,
    Qwen3Config,
    Qwen3Moe,
    Qwen3MoeConfig,
    SeedOss,
    SeedOssConfig,
    SmolLM3,
    SmolLM3Config,
    StableLm,
    StableLmConfig,
)
from attnkit.models.llama4 import Llama4, Llama4Config
from attnkit.models.mpt import Mpt, MptConfig
from attnkit.models.opt import OPT, OPTConfig
from attnkit.models.outputs import ModelOutput
from attnkit.models.phi import Phi, PhiConfig
from attnkit.models.roberta import (
    Roberta,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
)
from attnkit.models.starcoder2 import Starcoder2, Starcoder2Config
from attnkit.models.t5 import T5, T5Config
from attnkit.models.transformer import Transformer, TransformerConfig
from attnkit.models.vit import ViT, ViTConfig, ViTForImageClassification
from attnkit.models.clip import Clip, ClipConfig, Siglip, SiglipConfig
from attnkit.models.whisper import Whisper, WhisperConfig

__all__ = [
    "Arcee", "ArceeConfig", "Bert", "BertConfig", "BertForMaskedLM", "BertForQuestionAnswering",
    "BertForSequenceClassification", "BertForTokenClassification", "Bloom", "BloomConfig", "Clip", "ClipConfig",
    "Cohere", "Cohere2", "Cohere2Config", "CohereConfig", "Config", "DeepseekV2", "DeepseekV2Config", "DeepseekV3",
    "DeepseekV3Config", "DistilBert", "DistilBertConfig", "DistilBertForMaskedLM", "DistilBertForQuestionAnswering",
    "DistilBertForSequenceClassification", "DistilBertForTokenClassification", "Dots1", "Dots1Config", "Ernie4_5",
    "Ernie4_5Config", "Ernie4_5Moe", "Ernie4_5MoeConfig", "Esm", "EsmConfig", "EsmForMaskedLM",
    "EsmForSequenceClassification", "EsmForTokenClassification", "Exaone4", "Exaone4Config", "Falcon", "FalconConfig",
    "Gemma", "Gemma2", "Gemma2Config", "Gemma3", "Gemma3Config", "GemmaConfig", "Glm", "Glm4", "Glm4Config", "Glm4Moe",
    "Glm4MoeConfig", "GlmConfig", "GPT", "GPTBigCode", "GPTBigCodeConfig", "GPTConfig", "GPTJ", "GPTJConfig", "GPTNeo",
    "GPTNeoConfig", "GPTNeoX", "GPTNeoXConfig", "GptOss", "GptOssConfig", "Granite", "GraniteConfig", "GraniteMoe",
    "GraniteMoeConfig", "Helium", "HeliumConfig", "HunYuanDense", "HunYuanDenseConfig", "Llama", "Llama4",
    "Llama4Config", "LlamaConfig", "Ministral", "MinistralConfig", "Mistral", "MistralConfig", "Mixtral",
    "MixtralConfig", "Model", "ModelOutput", "ModernBert", "ModernBertConfig", "ModernBertForMaskedLM",
    "ModernBertForSequenceClassification", "ModernBertForTokenClassification", "Mpt", "MptConfig", "Nemotron",
    "NemotronConfig", "Olmo", "Olmo2", "Olmo2Config", "Olmo3", "Olmo3Config", "OlmoConfig", "Olmoe", "OlmoeConfig",
    "OPT", "OPTConfig", "Phi", "Phi3", "Phi3Config", "PhiConfig", "Qwen2", "Qwen2Config", "Qwen2Moe", "Qwen2MoeConfig",
    "Qwen3", "Qwen3Config", "Qwen3Moe", "Qwen3MoeConfig", "Roberta", "RobertaConfig", "RobertaForMaskedLM",
    "RobertaForQuestionAnswering", "RobertaForSequenceClassification", "RobertaForTokenClassification", "SeedOss",
    "Siglip", "SiglipConfig", "SeedOssConfig", "SmolLM3", "SmolLM3Config", "StableLm", "StableLmConfig", "Starcoder2",
    "Starcoder2Config", "T5", "T5Config", "Transformer", "TransformerConfig", "ViT", "ViTConfig",
    "ViTForImageClassification", "Whisper", "WhisperConfig",
]
