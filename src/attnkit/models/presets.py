"""Named sizes of every family: ``model_type -> preset name -> config fields``.

``Config.from_preset(name)`` reads this table. Sizes follow the papers and the published
checkpoints; the small ``*-tiny`` presets are for tests and demos.
"""

PRESETS: dict[str, dict[str, dict]] = {
    "gpt2": {
        # Radford et al. 2019, Table 2; layer counts and widths as the released checkpoints.
        "gpt2": dict(n_layers=12, n_heads=12, d_model=768),
        "gpt2-medium": dict(n_layers=24, n_heads=16, d_model=1024),
        "gpt2-large": dict(n_layers=36, n_heads=20, d_model=1280),
        "gpt2-xl": dict(n_layers=48, n_heads=25, d_model=1600),
        "gpt-tiny": dict(vocab_size=256, n_positions=64, n_layers=2, n_heads=4, d_model=32, bos_token_id=None, eos_token_id=None),
        "gpt-small": dict(
            vocab_size=4096, n_positions=256, n_layers=6, n_heads=6, d_model=384, bos_token_id=None, eos_token_id=None
        ),
    },
    "llama": {
        # Touvron et al. 2023 (Llama 2 7B: Hugging Face's LlamaConfig defaults); TinyLlama-1.1B
        # (Zhang et al. 2024) and SmolLM-135M (Hugging Face 2024), grouped-query attention.
        "llama-2-7b": dict(),  # 6,738,415,616 params
        "tinyllama-1.1b": dict(d_model=2048, d_ff=5632, n_layers=22, n_heads=32, n_kv_heads=4, norm_eps=1e-5),
        "smollm-135m": dict(vocab_size=49152, d_model=576, d_ff=1536, n_layers=30, n_heads=9, n_kv_heads=3,
                            norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0),
        # Llama 3.2 1B (Meta 2024): tied embeddings, Llama 3.1's RoPE scaling for 131,072 positions.
        "llama-3.2-1b": dict(vocab_size=128256, n_positions=131072, d_model=2048, d_ff=8192, n_layers=16, n_heads=32,
                             n_kv_heads=8, norm_eps=1e-5, rope_base=500000.0, tie_word_embeddings=True,
                             rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                             bos_token_id=128000, eos_token_id=128001),
        "llama-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2),
    },
    "mistral": {
        # Jiang et al. 2023: Mistral-7B-v0.1 (4,096-token sliding window, 32,768 positions);
        # v0.3's shape without the window and with a 32,768-token vocabulary.
        "mistral-7b-v0.1": dict(n_positions=32768),  # 7,241,732,096 params
        "mistral-7b-v0.3": dict(vocab_size=32768, n_positions=32768, rope_base=1000000.0,  # 7,248,023,552 params
                                sliding_window=None),
        "mistral-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                             sliding_window=8),
    },
    "qwen2": {
        # Qwen Team 2024: Qwen2.5-0.5B (tied embeddings, 14 heads sharing 2 key/value heads).
        "qwen2.5-0.5b": dict(d_model=896, d_ff=4864, n_layers=24, n_heads=14, n_kv_heads=2, rope_base=1000000.0,
                             tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643),  # 494,032,768 params
        "qwen2-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2),
    },
    "phi3": {
        # Abdin et al. 2024: Phi-3-mini with its 4k context (its 2,047-token sliding window; the 128k
        # variant's LongRoPE is not supported).
        "phi-3-mini-4k": dict(sliding_window=2047),  # 3,821,079,552 params
        "phi3-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          eos_token_id=2, pad_token_id=0),
    },
    "qwen3": {
        # Qwen Team 2025: Qwen3-0.6B and Qwen3-1.7B (16 query heads of 128 sharing 8 key/value heads,
        # tied embeddings, 40,960 positions).
        "qwen3-0.6b": dict(d_model=1024, d_ff=3072, n_layers=28, n_heads=16, n_kv_heads=8, n_positions=40960,  # 596,049,920
                           rope_base=1000000.0, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645),
        "qwen3-1.7b": dict(d_model=2048, d_ff=6144, n_layers=28, n_heads=16, n_kv_heads=8, n_positions=40960,  # 1,720,574,976
                           rope_base=1000000.0, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645),
        "qwen3-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                           head_dim=16),
    },
    "mixtral": {
        # Jiang et al. 2024: Mixtral 8x7B (HF's MixtralConfig defaults: 8 experts, 2 per token).
        "mixtral-8x7b": dict(n_positions=32768),  # 46,702,792,704 params
        "mixtral-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=48, n_layers=2, n_heads=4, n_kv_heads=2,
                             n_experts=4),
    },
    "qwen2_moe": {
        # Qwen Team 2024: Qwen1.5-MoE-A2.7B (60 experts of 1,408, 4 per token, a shared expert of 5,632).
        "qwen1.5-moe-a2.7b": dict(bos_token_id=151643, eos_token_id=151643),  # 14,315,784,192 params
        "qwen2-moe-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=24, n_layers=2, n_heads=4,
                               n_kv_heads=2, n_experts=4, experts_per_token=2, shared_expert_d_ff=40),
    },
    "qwen3_moe": {
        # Qwen Team 2025: Qwen3-30B-A3B (128 experts of 768, 8 per token; about 3.3B active per token).
        "qwen3-30b-a3b": dict(head_dim=128, tie_word_embeddings=False, normalize_expert_weights=True,
                              bos_token_id=151643, eos_token_id=151645),  # 30,532,122,624 params
        "qwen3-moe-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=24, n_layers=2, n_heads=4,
                               n_kv_heads=2, head_dim=8, n_experts=4, experts_per_token=2),
    },
    "olmo2": {
        # OLMo et al. 2024 (OLMo 2): the 1B and 7B shapes, a 100,352-token vocabulary, 4,096 positions.
        "olmo-2-1b": dict(vocab_size=100352, n_positions=4096, d_model=2048, d_ff=8192, n_layers=16, n_heads=16,
                          rope_base=500000.0, norm_eps=1e-6, eos_token_id=100257, pad_token_id=100277),
        "olmo-2-7b": dict(vocab_size=100352, n_positions=4096, rope_base=500000.0, norm_eps=1e-6, eos_token_id=100257,
                          pad_token_id=100277),  # 7,298,617,344 params
        "olmo2-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                           eos_token_id=2, pad_token_id=0),
    },
    "deepseek_v2": {
        # DeepSeek-AI 2024: DeepSeek-V2-Lite (the class defaults; 2.4B active).
        "deepseek-v2-lite": dict(),  # 15,706,484,224 params
        "deepseek-v2-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=3, n_heads=4, head_dim=12,
                                 rotary_dim=4, v_head_dim=8, kv_lora_rank=16, d_ff=16, n_experts=8, experts_per_token=2,
                                 expert_groups=4, expert_groups_per_token=2, expert_group_score="max",
                                 shared_expert_d_ff=16, moe_layers=(1, 2), dense_d_ff=48, bos_token_id=1,
                                 eos_token_id=2, pad_token_id=0),
    },
    "deepseek_v3": {
        # DeepSeek-AI 2024: DeepSeek-V3 (HF's DeepseekV3Config defaults; 37B active).
        "deepseek-v3": dict(),  # 671,026,404,352 params
        "deepseek-v3-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=3, n_heads=4, head_dim=12,
                                 rotary_dim=4, v_head_dim=8, kv_lora_rank=16, q_lora_rank=24, d_ff=16, n_experts=8,
                                 experts_per_token=2, expert_groups=4, expert_groups_per_token=2, shared_expert_d_ff=16,
                                 moe_layers=(1, 2), dense_d_ff=48, eos_token_id=2, pad_token_id=0),
    },
    "llama4_text": {
        # Meta 2025: Llama 4 Scout (16 experts in every layer) and Maverick (128 experts on every
        # other layer, no query/key norms), the text models, without Scout's RoPE scaling.
        "llama-4-scout-17b-16e": dict(),  # 107,769,861,120 params
        "llama-4-maverick-17b-128e": dict(n_experts=128, moe_layers=tuple(range(1, 48, 2)), dense_d_ff=16384,
                                          qk_l2_norm=False),  # 400,711,848,960 params
        "llama4-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=4, n_heads=4, n_kv_heads=2,
                            head_dim=8, d_ff=16, shared_expert_d_ff=16, n_experts=4, experts_per_token=2,
                            moe_layers=(1, 3), dense_d_ff=48, nope_layers=(3,), attention_chunk_size=4,
                            attn_temperature_floor=4, attn_temperature_scale=0.5, eos_token_id=2, pad_token_id=0),
    },
    "hunyuan_v1_dense": {
        "hunyuan-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                             head_dim=8, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "olmo": {
        "olmo-7b": dict(),  # HF's OlmoConfig defaults: 6,888,095,744 params
        "olmo-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          clip_qkv=0.5, eos_token_id=2, pad_token_id=0),
    },
    "ernie4_5_moe": {
        # HF's Ernie4_5_MoeConfig defaults: 21,825,436,160 params (transformers counts 1,728 more: its
        # score biases are parameters, attnkit's buffers)
        "ernie-4.5-21b-a3b": dict(),
        "ernie4_5-moe-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2,
                                  d_ff=16, dense_d_ff=48, n_experts=4, experts_per_token=2, shared_expert_d_ff=16,
                                  moe_layers=(1, 2), eos_token_id=2, pad_token_id=0),
    },
    "dots1": {
        "dots1-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=8,
                           d_ff=16, dense_d_ff=48, n_experts=8, experts_per_token=2, shared_expert_d_ff=32,
                           moe_layers=(1, 2), eos_token_id=2, pad_token_id=0),
    },
    "granitemoe": {
        "granitemoe-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=16, n_layers=2, n_heads=4,
                                n_kv_heads=2, n_experts=4, experts_per_token=2, embedding_multiplier=2.0, residual_multiplier=0.5,
                                logits_scaling=2.0, attn_scale_dim=16.0, bos_token_id=1, eos_token_id=2,
                                pad_token_id=0),
    },
    "glm4_moe": {
        # Zhipu AI 2025: GLM-4.5-Air (106B, 12B active) and GLM-4.5 (355B, 32B active); q/k/v biases, and in
        # GLM-4.5 query/key norms.
        "glm-4.5-air": dict(vocab_size=151552, d_model=4096, n_layers=46, n_heads=96, n_kv_heads=8, head_dim=128,
                            d_ff=1408, dense_d_ff=10944, n_experts=128, experts_per_token=8, shared_expert_d_ff=1408,
                            moe_layers=tuple(range(1, 46)), qkv_bias=True, eos_token_id=151329,
                            pad_token_id=151329),  # 106,852,245,504 params (and a multi-token-prediction layer)
        "glm4-moe-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2,
                              head_dim=8, rotary_dim=4, d_ff=16, dense_d_ff=48, n_experts=8, experts_per_token=2,
                              expert_groups=4, expert_groups_per_token=2, shared_expert_d_ff=16, moe_layers=(1, 2),
                              qkv_bias=True, qk_norm=True, eos_token_id=2, pad_token_id=0),
    },
    "starcoder2": {
        # Lozhkov et al. 2024: StarCoder2-3B (a 4,096-position window over 16,384 positions).
        "starcoder2-3b": dict(n_positions=16384, rope_base=999999.4420358813, sliding_window=4096),  # 3,030,371,328
        "starcoder2-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4,
                                n_kv_heads=2, sliding_window=8, bos_token_id=1, eos_token_id=2),
    },
    "stablelm": {
        # Stability AI: StableLM-3B-4E1T (HF's StableLmConfig defaults) and StableLM 2 1.6B (q/k/v biases).
        "stablelm-3b-4e1t": dict(),  # 2,795,443,200 params
        "stablelm-2-1.6b": dict(vocab_size=100352, d_model=2048, d_ff=5632, n_layers=24, n_heads=32, rotary_dim=16,
                                qkv_bias=True, eos_token_id=100257, bos_token_id=100257),  # 1,644,515,328 params
        "stablelm-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              rotary_dim=2, qkv_bias=True, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "exaone4": {
        # LG AI Research 2025: EXAONE 4.0 1.2B (no windows: every layer global, with rotary positions).
        "exaone-4.0-1.2b": dict(d_model=2048, d_ff=4096, n_layers=30, n_heads=32, n_kv_heads=8, head_dim=64,
                                n_positions=65536, rope_base=1000000.0, sliding_window=None, nope_layers=None,
                                tie_word_embeddings=True, eos_token_id=361),
        "exaone4-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=4, n_heads=4, n_kv_heads=2,
                             sliding_window=4, nope_layers=(3,), bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "helium": {
        "helium-1-preview": dict(),  # HF's HeliumConfig defaults (kyutai/helium-1-preview, 2B)
        "helium-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                            head_dim=8, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "arcee": {
        "arcee-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                           head_dim=8, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "nemotron": {
        "nemotron-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              rotary_dim=4, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "ministral": {
        "ministral-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=3, n_heads=4, n_kv_heads=2,
                               sliding_window=4, sliding_layers=(0, 2), bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "cohere2": {
        # Cohere For AI 2024-25: Command R7B (a 4,096-position window on three layers of four).
        "command-r7b": dict(vocab_size=256000, n_positions=8192, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                            d_ff=14336, rope_base=50000.0, logits_scaling=4.0,
                            nope_layers=tuple(range(3, 32, 4))),  # 8,028,033,024 params
        "cohere2-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=64,
                             sliding_window=4, nope_layers=(3,), bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "gpt_oss": {
        # OpenAI 2025: gpt-oss-120b (HF's GptOssConfig defaults) and gpt-oss-20b (24 layers, 32 experts).
        "gpt-oss-120b": dict(eos_token_id=200002, pad_token_id=199999),  # 116,829,156,672 params
        "gpt-oss-20b": dict(n_layers=24, n_experts=32, sliding_layers=tuple(range(0, 24, 2)), eos_token_id=200002,
                            pad_token_id=199999),  # 20,914,757,184 params
        "gpt-oss-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                             head_dim=8, d_ff=16, n_experts=4, experts_per_token=2, sliding_window=4,
                             sliding_layers=(0,), rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                                "original_max_position_embeddings": 16,
                                                                "attention_factor": 1.1386294361119891,
                                                                "beta_fast": 32.0, "beta_slow": 1.0,
                                                                "truncate": False},
                             eos_token_id=2, pad_token_id=0),
    },
    "falcon": {
        # Almazrouei et al. 2023: Falcon-7B (multi-query, one norm) and Falcon-40B (8 key/value heads, two norms).
        "falcon-7b": dict(),  # 6,921,720,704 params
        "falcon-40b": dict(d_model=8192, n_layers=60, n_heads=128, n_kv_heads=8, d_ff=32768,
                           shared_norm=False),  # 41,303,293,952 params
        "falcon-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                            bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "mpt": {
        # MosaicML 2023: MPT-7B (32 heads of 128, a 50,432-token vocabulary).
        "mpt-7b": dict(vocab_size=50432, d_model=4096, n_layers=32, n_heads=32),  # 6,649,286,656 params
        "mpt-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, clip_qkv=0.5,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "bloom": {
        # BigScience 2022 (BLOOM): 560M to 176B, a 250,880-token vocabulary.
        "bloom-560m": dict(),  # 559,214,592 params
        "bloom-1b7": dict(d_model=2048, n_layers=24, n_heads=16),
        "bloom-7b1": dict(d_model=4096, n_layers=30, n_heads=32),
        "bloom-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, bos_token_id=1,
                           eos_token_id=2, pad_token_id=0),
    },
    "opt": {
        # Zhang et al. 2022, Table 1 (OPT-350M's post-norm layout is not supported).
        "opt-125m": dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072),  # 125,239,296 params
        "opt-1.3b": dict(d_model=2048, n_layers=24, n_heads=32, d_ff=8192),
        "opt-2.7b": dict(d_model=2560, n_layers=32, n_heads=32, d_ff=10240),
        "opt-6.7b": dict(d_model=4096, n_layers=32, n_heads=32, d_ff=16384),
        "opt-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "gpt_neo": {
        # Black et al. 2021 (EleutherAI GPT-Neo): a window of 256 on every other layer.
        "gpt-neo-125m": dict(d_model=768, n_layers=12, n_heads=12, sliding_layers=tuple(range(1, 12, 2))),  # 125,198,592
        "gpt-neo-1.3b": dict(),  # 1,315,575,808 params
        "gpt-neo-2.7b": dict(d_model=2560, n_layers=32, n_heads=20,
                             sliding_layers=tuple(range(1, 32, 2))),  # 2,651,307,520 params
        "gpt-neo-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, sliding_window=4,
                             sliding_layers=(1,), bos_token_id=1, eos_token_id=2),
    },
    "gpt_bigcode": {
        # BigCode 2023: multi-query attention on GPT-2's layout.
        "santacoder": dict(vocab_size=49280, n_positions=2048, d_model=2048, n_layers=24, n_heads=16, d_ff=8192,
                           bos_token_id=49152, eos_token_id=49152),  # 1,124,886,528 params
        "starcoder": dict(vocab_size=49152, n_positions=8192, d_model=6144, n_layers=40, n_heads=48, d_ff=24576,
                          bos_token_id=0, eos_token_id=0),  # 15,517,456,384 params
        "gpt-bigcode-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4,
                                 bos_token_id=1, eos_token_id=2),
    },
    "gptj": {
        "gpt-j-6b": dict(),  # 6,050,882,784 params: HF's GPTJConfig defaults
        "gptj-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, rotary_dim=4,
                          bos_token_id=1, eos_token_id=2),
    },
    "phi": {
        # Li et al. 2023 (Phi-1.5: HF's PhiConfig shape) and Phi-2 (2,560 wide, 32 layers, 40% of each head rotated).
        "phi-1.5": dict(bos_token_id=50256, eos_token_id=50256),  # 1,418,270,720 params
        "phi-2": dict(d_model=2560, d_ff=10240, n_layers=32, bos_token_id=50256, eos_token_id=50256),  # 2,779,683,840
        "phi-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, rotary_dim=4),
    },
    "cohere": {
        "cohere-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                            bos_token_id=1, eos_token_id=2),
    },
    "granite": {
        "granite-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                             embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=8.0,
                             attn_scale_dim=64.0, tie_word_embeddings=True),
    },
    "olmo3": {
        "olmo3-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=4, n_heads=4, n_kv_heads=2,
                           sliding_window=8, eos_token_id=2, pad_token_id=0),
    },
    "smollm3": {
        "smollm3-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=4, n_heads=4, n_kv_heads=2,
                             nope_layers=(3,), bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "ernie4_5": {
        "ernie-4.5-0.3b": dict(),  # 360,748,032 params: HF's Ernie4_5Config defaults
        "ernie4_5-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              head_dim=8, bos_token_id=1, eos_token_id=2),
    },
    "seed_oss": {
        "seed-oss-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4,
                              n_kv_heads=2, head_dim=8, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    },
    "glm": {
        "glm-4-9b": dict(),  # 9,399,951,360 params: HF's GlmConfig defaults
        "glm-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                         head_dim=8, rotary_dim=4, eos_token_id=2, pad_token_id=0),
    },
    "glm4": {
        "glm4-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          head_dim=8, rotary_dim=4, eos_token_id=2, pad_token_id=0),
    },
    "olmoe": {
        # Muennighoff et al. 2024: OLMoE-1B-7B (64 experts of 1,024, 8 per token; 1.3B active).
        "olmoe-1b-7b": dict(d_ff=1024),  # 6,919,161,856 params
        "olmoe-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=24, n_layers=2, n_heads=4,
                           n_experts=4, experts_per_token=2, eos_token_id=2, pad_token_id=0),
    },
    "gpt_neox": {
        # Biderman et al. 2023, Table 1: the Pythia suite (rotary on a quarter of each head).
        "pythia-70m": dict(d_model=512, n_layers=6, n_heads=8),  # 70,426,624 params
        "pythia-160m": dict(),  # 162,322,944 params
        "pythia-410m": dict(d_model=1024, n_layers=24, n_heads=16, rotary_dim=16),  # 405,334,016 params
        "pythia-1b": dict(d_model=2048, n_layers=16, n_heads=8, rotary_dim=64),  # 1,011,781,632 params
        "pythia-tiny": dict(vocab_size=256, n_positions=64, d_model=32, n_layers=2, n_heads=4, rotary_dim=4),
    },
    "gemma": {
        # Gemma Team 2024a: Gemma 2B (multi-query attention) and 7B (HF's GemmaConfig defaults).
        "gemma-2b": dict(d_model=2048, d_ff=16384, n_layers=18, n_heads=8, n_kv_heads=1),  # 2,506,172,416 params
        "gemma-7b": dict(),  # 8,537,680,896 params
        "gemma-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                           head_dim=16),
    },
    "gemma2": {
        # Gemma Team 2024b: Gemma 2 2B (HF's Gemma2Config defaults) and 9B; a 4,096-token window on
        # every other layer, soft-capped scores (50) and logits (30).
        "gemma-2-2b": dict(),  # 2,614,341,888 params
        "gemma-2-9b": dict(d_model=3584, d_ff=14336, n_layers=42, n_heads=16, n_kv_heads=8),  # 9,241,705,984 params
        "gemma2-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                            head_dim=16, sliding_window=8, attn_scale_dim=16),
    },
    "gemma3_text": {
        # Gemma Team 2025: Gemma 3 1B (text only; 512-token window on five layers of six, RoPE
        # bases 10,000 local and 1,000,000 global, 32,768 positions).
        "gemma-3-1b": dict(vocab_size=262144, n_positions=32768, d_model=1152, d_ff=6912, n_layers=26, n_heads=4,
                           n_kv_heads=1, sliding_window=512),  # 999,885,952 params
        "gemma3-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=64, n_layers=2, n_heads=4, n_kv_heads=2,
                            head_dim=16, sliding_window=8, attn_scale_dim=16),
    },
    "transformer": {
        # Vaswani et al. 2017, Table 3 (base and big), shared 37,000-token BPE vocabulary (§5.1).
        "transformer-base": dict(d_model=512, d_ff=2048, n_heads=8, n_encoder_layers=6, n_decoder_layers=6, dropout=0.1),
        "transformer-big": dict(d_model=1024, d_ff=4096, n_heads=16, n_encoder_layers=6, n_decoder_layers=6, dropout=0.3),
        "transformer-tiny": dict(vocab_size=256, n_positions=128, d_model=32, d_ff=64, n_heads=4, n_encoder_layers=2,
                                 n_decoder_layers=2),
    },
    "bert": {
        # Devlin et al. 2019, §3: BERT-base (L=12, H=768, A=12) and BERT-large (L=24, H=1024, A=16).
        "bert-base-uncased": dict(),
        "bert-large-uncased": dict(n_layers=24, n_heads=16, d_model=1024, d_ff=4096),
        "bert-tiny": dict(vocab_size=256, n_positions=64, n_layers=2, n_heads=4, d_model=32, d_ff=64),
    },
    "t5": {
        # Raffel et al. 2020, §3.7 (Small, Base, Large; the released checkpoints' shapes) with
        # SentencePiece's 32,128-entry vocabulary: T5 v1.0, ReLU feed-forward, tied LM head.
        "t5-small": dict(d_model=512, head_dim=64, n_heads=8, d_ff=2048,  # 60,506,624 params
                         n_encoder_layers=6, n_decoder_layers=6),
        "t5-base": dict(d_model=768, head_dim=64, n_heads=12, d_ff=3072,  # 222,903,552 params
                        n_encoder_layers=12, n_decoder_layers=12),
        "t5-large": dict(d_model=1024, head_dim=64, n_heads=16, d_ff=4096,  # 737,668,096 params
                         n_encoder_layers=24, n_decoder_layers=24),
        # Flan-T5 (Chung et al. 2022), the T5 v1.1 architecture: gated GELU feed-forward, untied LM
        # head without the d_model^-1/2 scaling (google/flan-t5-small, google/flan-t5-base).
        "flan-t5-small": dict(d_model=512, head_dim=64, n_heads=6, d_ff=1024,  # 76,961,152 params
                              n_encoder_layers=8, n_decoder_layers=8, activation="geglu_tanh", tie_word_embeddings=False),
        "flan-t5-base": dict(d_model=768, head_dim=64, n_heads=12, d_ff=2048,  # 247,577,856 params
                             n_encoder_layers=12, n_decoder_layers=12, activation="geglu_tanh", tie_word_embeddings=False),
        "t5-tiny": dict(vocab_size=256, d_model=32, head_dim=8, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2,
                        num_buckets=8, max_distance=20),
    },
    "vit": {
        # Dosovitskiy et al. 2021, Table 1: ViT-Base (L=12, D=768, MLP 3072, 12 heads) and ViT-Large
        # (24, 1024, 4096, 16) with 16 × 16 patches of 224 × 224 images and an ImageNet-1k head, as
        # google/vit-base-patch16-224 (86,567,656 params) and google/vit-large-patch16-224.
        "vit-base-patch16-224": dict(num_labels=1000),
        "vit-large-patch16-224": dict(n_layers=24, n_heads=16, d_model=1024, d_ff=4096, num_labels=1000),
        "vit-tiny": dict(image_size=32, patch_size=8, n_layers=2, n_heads=4, d_model=32, d_ff=64),
        # scikit-learn's digits (load_digits): 8 × 8 grey images of the digits 0-9, 2 × 2 patches.
        "vit-digits": dict(image_size=8, patch_size=2, num_channels=1, n_layers=2, n_heads=4, d_model=64, d_ff=128,
                           num_labels=10, label_names=tuple("0123456789")),
    },
    "clip": {
        # Radford et al. 2021, Tables 19-20: the released ViT CLIPs (openai/clip-vit-*), a 12-layer
        # text encoder over 77 positions and a 49,408-token vocabulary.
        "clip-vit-base-patch32": dict(),  # 151,277,313 params
        "clip-vit-base-patch16": dict(patch_size=16),  # 149,620,737
        "clip-vit-large-patch14": dict(text_d_model=768, text_n_heads=12, text_d_ff=3072, patch_size=14,
                                       vision_d_model=1024, vision_n_layers=24, vision_n_heads=16, vision_d_ff=4096,
                                       projection_dim=768),  # 427,616,513
        "clip-vit-large-patch14-336": dict(text_d_model=768, text_n_heads=12, text_d_ff=3072, patch_size=14,
                                           image_size=336, vision_d_model=1024, vision_n_layers=24, vision_n_heads=16,
                                           vision_d_ff=4096, projection_dim=768),
        # scikit-learn's digits: 8 × 8 grey images in 2 × 2 patches, captions of a few characters.
        "clip-digits": dict(vocab_size=64, n_positions=24, text_d_model=64, text_n_layers=2, text_n_heads=4,
                            text_d_ff=128, image_size=8, patch_size=2, num_channels=1, vision_d_model=64,
                            vision_n_layers=2, vision_n_heads=4, vision_d_ff=128, projection_dim=32),
        "clip-tiny": dict(vocab_size=99, n_positions=20, text_d_model=32, text_n_layers=2, text_n_heads=4, text_d_ff=37,
                          image_size=32, patch_size=8, vision_d_model=32, vision_n_layers=2, vision_n_heads=4,
                          vision_d_ff=37, projection_dim=16, pad_token_id=0, bos_token_id=97, eos_token_id=98),
    },
    "siglip": {
        # Zhai et al. 2023: the released SigLIPs (google/siglip-*), 64 text positions, a 32,000-token
        # vocabulary (so400m: the shape-optimised 400M vision tower of Alabdulmohsin et al. 2023).
        "siglip-base-patch16-224": dict(),
        "siglip-base-patch16-256": dict(image_size=256),
        "siglip-large-patch16-256": dict(image_size=256, text_d_model=1024, text_n_layers=24, text_n_heads=16,
                                         text_d_ff=4096, vision_d_model=1024, vision_n_layers=24, vision_n_heads=16,
                                         vision_d_ff=4096, projection_dim=1024),
        "siglip-so400m-patch14-384": dict(image_size=384, patch_size=14, text_d_model=1152, text_n_layers=27,
                                          text_n_heads=16, text_d_ff=4304, vision_d_model=1152, vision_n_layers=27,
                                          vision_n_heads=16, vision_d_ff=4304, projection_dim=1152),
        "siglip-tiny": dict(vocab_size=64, n_positions=16, text_d_model=32, text_n_layers=2, text_n_heads=4,
                            text_d_ff=37, image_size=32, patch_size=8, vision_d_model=32, vision_n_layers=2,
                            vision_n_heads=4, vision_d_ff=37, projection_dim=32),
    },
    "whisper": {
        # Radford et al. 2022, Table 1: the released multilingual checkpoints' shapes (openai/whisper-*),
        # 80 mel bins, 1500 encoder and 448 decoder positions, 51,865-token vocabulary.
        "whisper-tiny": dict(d_model=384, n_heads=6, d_ff=1536, n_encoder_layers=4, n_decoder_layers=4),  # 37,760,640
        "whisper-base": dict(d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6, n_decoder_layers=6),  # 72,593,920
        "whisper-small": dict(d_model=768, n_heads=12, d_ff=3072,  # 241,734,912
                              n_encoder_layers=12, n_decoder_layers=12),
        # For tests: 2 s windows (200 frames), 8 mel bins, a 96-token vocabulary.
        "whisper-test": dict(vocab_size=96, num_mel_bins=8, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2,
                             n_decoder_layers=2, max_source_positions=100, max_target_positions=32,
                             pad_token_id=90, bos_token_id=90, eos_token_id=90, decoder_start_token_id=91),
        # The built-in speech task (attnkit.data.speech.spoken_numbers): 2 s windows, 40 mel bins,
        # tokens 0-9 the digits, 10 the end of text, 11 the start of the transcript.
        "whisper-numbers": dict(vocab_size=12, num_mel_bins=40, d_model=64, n_heads=4, d_ff=256, n_encoder_layers=2,
                                n_decoder_layers=2, max_source_positions=100, max_target_positions=8,
                                pad_token_id=10, bos_token_id=10, eos_token_id=10, decoder_start_token_id=11),
    },
    "distilbert": {
        # Sanh et al. 2019: BERT-base's width with 6 layers, no segment embeddings or pooler.
        "distilbert-base-uncased": dict(),  # 66,362,880 params
        "distilbert-tiny": dict(vocab_size=256, n_positions=64, n_layers=2, n_heads=4, d_model=32, d_ff=64),
    },
    "roberta": {
        # Liu et al. 2019: RoBERTa-base and -large (BERT's sizes, 50,265 BPE tokens, 514 positions);
        # DistilRoBERTa (Sanh et al. 2019's distillation, 6 layers; the all-distilroberta-v1 encoder).
        "roberta-base": dict(),  # 124,645,632 params
        "roberta-large": dict(n_layers=24, n_heads=16, d_model=1024, d_ff=4096),
        "distilroberta-base": dict(n_layers=6),
        "roberta-tiny": dict(vocab_size=256, n_positions=66, n_layers=2, n_heads=4, d_model=32, d_ff=64),
    },
    "modernbert": {
        # Warner et al. 2024 (answerdotai/ModernBERT-*); parameter counts of the masked LM (tied head).
        "modernbert-base": dict(),  # 149,655,232 params
        "modernbert-large": dict(d_model=1024, d_ff=2624, n_layers=28, n_heads=16),  # 395,881,664 params
        "modernbert-tiny": dict(vocab_size=256, n_positions=64, d_model=32, d_ff=48, n_layers=4, n_heads=4,
                                local_attention=8, pad_token_id=0, cls_token_id=1, sep_token_id=2),
    },
    "esm": {
        # Lin et al. 2023, the released ESM-2 checkpoints (facebook/esm2_*): 20 heads, d_ff = 4 × width,
        # ESM's 33-token vocabulary; parameter counts of the masked LM (tied head), as transformers counts them.
        "esm2_t6_8M_UR50D": dict(n_layers=6, d_model=320, d_ff=1280),  # 7,512,474 params
        "esm2_t12_35M_UR50D": dict(n_layers=12, d_model=480, d_ff=1920),  # 33,501,394 params
        "esm2_t30_150M_UR50D": dict(n_layers=30, d_model=640, d_ff=2560),  # 148,140,154 params
        "esm2_t33_650M_UR50D": dict(n_layers=33, d_model=1280, d_ff=5120),  # 651,043,254 params
        # Rives et al. 2021: ESM-1b (facebook/esm1b_t33_650M_UR50S), learned positions for 1,024
        # tokens (+ 2: the padding offset) and a LayerNorm on the embeddings.
        "esm1b_t33_650M_UR50S": dict(n_layers=33, d_model=1280, d_ff=5120, position_embedding="absolute",
                                     embed_norm=True),
        "esm-tiny": dict(n_positions=64, n_layers=2, n_heads=4, d_model=32, d_ff=64),
    },
}
