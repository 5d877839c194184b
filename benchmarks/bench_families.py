"""The other families against Hugging Face, same weights, same process (no issue-6 target).

- ViT-B/16 image classification (``google/vit-base-patch16-224``'s shape, 1000 classes): a
  batch of 8 images of 224 × 224, forward only, fp32.
- T5-small (``t5-small``'s shape): greedy decoding of 32 new tokens from 4 sources of 48
  tokens, without EOS, fp32.
- Whisper-tiny (``openai/whisper-tiny``'s shape): greedy decoding of 32 new tokens after a
  4-token decoder prompt, from one 30-second window, fp32.
- A Mixtral-style mixture of experts (4 layers of 512, 8 SwiGLU experts of 1,024, 2 per token,
  grouped-query attention): a forward pass over 8 × 128 tokens, and greedy decoding of 64 new
  tokens after 16, fp32. ``transformers`` runs its experts with ``grouped_mm``; attnkit runs each
  chosen expert once on its rows.
- A Mistral-style model with a sliding window (4 layers of 512, grouped-query attention, a
  window of ``WINDOW`` positions): greedy decoding of ``WINDOW_NEW`` new tokens after 16, far past
  the window, fp32, and the KV cache each keeps (both keep only the window's positions).
- Qwen2.5-0.5B (``Qwen/Qwen2.5-0.5B``'s shape: 24 layers of 896, 14 query and 2 key-value heads,
  a tied 151,936-token embedding): greedy decoding of 64 new tokens after 16 in bf16, the way
  such a model runs on a CPU; tokens compared (bf16 rounds differently in each library, so a
  near-tie may go either way: the row says from where they differ); and the time to the first
  new token after a prompt of ``PREFILL_TOKENS`` tokens (prompt tokens/s); and a chat's next turn:
  ``CHAT_HISTORY`` tokens of conversation so far, a ``CHAT_USER``-token message, ``CHAT_REPLY`` new
  tokens, greedy. attnkit keeps the conversation in a ``PromptCache`` (it reads the new message
  only); ``transformers`` reads the whole conversation again (its chat pipeline, and ``generate``
  on the rendered conversation, do), and in the second row is given a copy of its cached
  history as ``cache`` (``past_key_values`` before 5.x; its documented recipe for reusing a prompt's cache).
- ModernBERT-base (``answerdotai/ModernBERT-base``'s shape: 22 layers of 768, two of every three
  attending within 128 tokens): one sequence of ``MODERNBERT_TOKENS`` tokens, forward, fp32.
  attnkit computes the windowed layers block by block; ``transformers`` (SDPA) with a band mask.

Random weights built by ``transformers`` and given to attnkit through ``attnkit.from_pretrained``;
alternating calls, median of the repeats; the outputs are compared (max |Δ logits| or equal tokens).
"""

from __future__ import annotations

import functools
import tempfile

import torch

from timing import alternate, median, spread, table


def _spread(hf, suffixes: tuple[str, ...]) -> None:
    """Output projections drawn 4x wider than their init, so greedy outputs vary with the input
    (at ``transformers``' init they are one repeated token, and "same tokens" would say little)."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(suffixes):
                p.normal_(0.0, 4.0 / p.shape[-1] ** 0.5)


def _load(hf, dtype: torch.dtype | None = None):
    import attnkit

    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        return attnkit.from_pretrained(d, dtype=dtype).eval()


def vit(repeats: int) -> list:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    hf = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    ak = _load(hf)
    pixels = torch.randn(8, 3, 224, 224)
    out = {}

    @torch.inference_mode()
    def run_ak():
        out["ak"] = ak(pixels).logits

    @torch.inference_mode()
    def run_hf():
        out["hf"] = hf(pixel_values=pixels).logits

    times = alternate({"attnkit": run_ak, "hf": run_hf}, repeats, warmup=1)
    rate = {k: 8 / median(v) for k, v in times.items()}
    diff = (out["ak"] - out["hf"]).abs().max().item()
    return ["ViT-B/16, 8 images 224², forward", "images/s", f"{rate['attnkit']:.2f}", f"{rate['hf']:.2f}",
            rate["attnkit"] / rate["hf"], f"max |Δ logits| {diff:.1e}", times]


def t5(repeats: int) -> list:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(T5Config(decoder_start_token_id=0)).eval()  # the defaults: t5-small's shape
    _spread(hf, (".o.weight", ".wo.weight", "relative_attention_bias.weight"))
    ak = _load(hf)
    hf.generation_config.eos_token_id = None  # every row makes all new tokens
    src = torch.randint(2, 32000, (4, 48))
    mask = torch.ones_like(src)
    out = {}

    def run_ak():
        out["ak"] = ak.generate(src, attention_mask=mask, max_new_tokens=32, eos_token_id=None)

    def run_hf():
        out["hf"] = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=32, do_sample=False)

    times = alternate({"attnkit": run_ak, "hf": run_hf}, repeats, warmup=1)
    rate = {k: 4 * 32 / median(v) for k, v in times.items()}
    same = out["ak"].shape == out["hf"].shape and torch.equal(out["ak"], out["hf"])
    return ["T5-small, greedy, 4 × 48 → 32 tokens", "tokens/s", f"{rate['attnkit']:.1f}", f"{rate['hf']:.1f}",
            rate["attnkit"] / rate["hf"], "same tokens" if same else "**different tokens**", times]


def whisper(repeats: int) -> list:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                        decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536)  # whisper-tiny
    hf = WhisperForConditionalGeneration(cfg).eval()
    _spread(hf, ("out_proj.weight", "fc2.weight"))
    ak = _load(hf)
    for g in (hf.generation_config,):
        g.eos_token_id = None
        g.suppress_tokens, g.begin_suppress_tokens, g.forced_decoder_ids = None, None, None
    features = torch.randn(1, 80, 3000)
    prompt = torch.tensor([[50258, 50259, 50359, 50363]])  # start, <|en|>, <|transcribe|>, <|notimestamps|>
    out = {}

    def run_ak():
        out["ak"] = ak.generate(features, decoder_input_ids=prompt, max_new_tokens=32, eos_token_id=None)

    def run_hf():
        out["hf"] = hf.generate(input_features=features, decoder_input_ids=prompt, max_new_tokens=32,
                                do_sample=False)

    times = alternate({"attnkit": run_ak, "hf": run_hf}, repeats, warmup=1)
    rate = {k: 32 / median(v) for k, v in times.items()}
    n = min(out["ak"].shape[1], out["hf"].shape[1])
    same = torch.equal(out["ak"][:, -32:], out["hf"][:, -32:]) if n >= 32 else False
    return ["Whisper-tiny, greedy, 30 s → 32 tokens", "tokens/s", f"{rate['attnkit']:.1f}", f"{rate['hf']:.1f}",
            rate["attnkit"] / rate["hf"], "same tokens" if same else "**different tokens**", times]


def _mixtral():
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    hf = MixtralForCausalLM(MixtralConfig(vocab_size=32000, hidden_size=512, intermediate_size=1024,
                                          num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                                          num_local_experts=8, num_experts_per_tok=2,
                                          max_position_embeddings=512)).eval()
    _spread(hf, ("o_proj.weight", "w2.weight", "down_proj"))
    return hf, _load(hf)


def moe(repeats: int) -> list:
    hf, ak = _mixtral()
    ids = torch.randint(0, 32000, (8, 128), generator=torch.Generator().manual_seed(1))
    out = {}

    @torch.inference_mode()
    def run_ak():
        out["ak"] = ak(ids).logits

    @torch.inference_mode()
    def run_hf():
        out["hf"] = hf(ids).logits

    times = alternate({"attnkit": run_ak, "hf": run_hf}, repeats, warmup=1)
    rate = {k: ids.numel() / median(v) for k, v in times.items()}
    diff = (out["ak"] - out["hf"]).abs().max().item()
    return ["Mixtral-style MoE (8 experts, top 2), forward 8 × 128 tokens", "tokens/s", f"{rate['attnkit']:.0f}",
            f"{rate['hf']:.0f}", rate["attnkit"] / rate["hf"], f"max |Δ logits| {diff:.1e}", times]


def _greedy(hf, ak, prompt: torch.Tensor, new_tokens: int, repeats: int) -> tuple[dict, dict]:
    """Both libraries decode ``new_tokens`` greedily after ``prompt``, taking turns: ``(seconds per
    call, output ids)``, each by ``"attnkit"`` / ``"hf"`` (``"ak"`` / ``"hf"`` for the ids)."""
    out = {}

    def run_ak():
        out["ak"] = ak.generate(prompt, max_new_tokens=new_tokens, eos_token_id=None)

    def run_hf():
        out["hf"] = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                do_sample=False, eos_token_id=None, pad_token_id=0)

    return alternate({"attnkit": run_ak, "hf": run_hf}, repeats, warmup=1), out


def moe_greedy(repeats: int) -> list:
    hf, ak = _mixtral()
    prompt = torch.randint(0, 32000, (1, 16), generator=torch.Generator().manual_seed(1))
    times, out = _greedy(hf, ak, prompt, 64, repeats)
    rate = {k: 64 / median(v) for k, v in times.items()}
    same = out["ak"].shape == out["hf"].shape and torch.equal(out["ak"], out["hf"])
    return ["Mixtral-style MoE, greedy, 16 → 64 tokens", "tokens/s", f"{rate['attnkit']:.1f}", f"{rate['hf']:.1f}",
            rate["attnkit"] / rate["hf"], "same tokens" if same else "**different tokens**", times]


WINDOW, WINDOW_NEW = 64, 384


def _cache_mib(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def windowed_greedy(repeats: int) -> list:
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    hf = MistralForCausalLM(MistralConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536,
                                          num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                                          sliding_window=WINDOW, max_position_embeddings=4096)).eval()
    _spread(hf, ("o_proj.weight", "down_proj.weight"))
    ak = _load(hf)
    made = []
    new_cache = ak.new_cache
    ak.new_cache = lambda batch_size, max_len: made.append(new_cache(batch_size, max_len)) or made[-1]
    prompt = torch.randint(0, 32000, (1, 16), generator=torch.Generator().manual_seed(1))
    out = {}

    def run_ak():
        out["ak"] = ak.generate(prompt, max_new_tokens=WINDOW_NEW, eos_token_id=None)

    def run_hf():
        out["hf"] = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=WINDOW_NEW,
                                do_sample=False, eos_token_id=None, pad_token_id=0, return_dict_in_generate=True)

    times = alternate({"attnkit": run_ak, "hf": run_hf}, min(repeats, 3), warmup=1)
    rate = {k: WINDOW_NEW / median(v) for k, v in times.items()}
    same = torch.equal(out["ak"], out["hf"].sequences)
    mib_ak = _cache_mib(t for c in made[-1].self_attn for t in (c.k, c.v))
    mib_hf = _cache_mib(t for layer in out["hf"].past_key_values.layers for t in (layer.keys, layer.values))
    return [f"Mistral-style, window {WINDOW}, greedy, 16 → {WINDOW_NEW} tokens", "tokens/s", f"{rate['attnkit']:.1f}",
            f"{rate['hf']:.1f}", rate["attnkit"] / rate["hf"],
            f"{'same tokens' if same else '**different tokens**'}; KV cache {mib_ak:.2f} vs {mib_hf:.2f} MiB", times]


@functools.cache
def _qwen2():
    """Qwen2.5-0.5B's shape in bf16, built once for the two rows that use it."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    hf = Qwen2ForCausalLM(Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                      num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
                                      max_position_embeddings=32768, rope_theta=1e6))
    _spread(hf, ("o_proj.weight", "down_proj.weight"))
    hf = hf.to(torch.bfloat16).eval()
    return hf, _load(hf, torch.bfloat16)


PREFILL_TOKENS = 1024


def qwen2_prefill(repeats: int) -> list:
    hf, ak = _qwen2()
    prompt = torch.randint(0, 151936, (1, PREFILL_TOKENS), generator=torch.Generator().manual_seed(2))
    times, out = _greedy(hf, ak, prompt, 1, min(repeats, 3))
    rate = {k: PREFILL_TOKENS / median(v) for k, v in times.items()}
    same = "same first token" if torch.equal(out["ak"], out["hf"]) else "**different first token**"
    return [f"Qwen2.5-0.5B-shaped, bf16, a {PREFILL_TOKENS}-token prompt to the first new token", "prompt tokens/s",
            f"{rate['attnkit']:.0f}", f"{rate['hf']:.0f}", rate["attnkit"] / rate["hf"], same, times]


def qwen2_greedy(repeats: int) -> list:
    hf, ak = _qwen2()
    prompt = torch.randint(0, 151936, (1, 16), generator=torch.Generator().manual_seed(1))
    times, out = _greedy(hf, ak, prompt, 64, min(repeats, 3))
    rate = {k: 64 / median(v) for k, v in times.items()}
    differ = (out["ak"][0, 16:] != out["hf"][0, 16:]).nonzero()
    same = "same tokens"
    if len(differ):  # how close the two choices were, in attnkit's logits at the first difference
        at = 16 + differ[0].item()
        with torch.inference_mode():
            logits = ak(out["hf"][:, :at]).logits[0, -1].float()
        gap = (logits[out["ak"][0, at]] - logits[out["hf"][0, at]]).item()
        same = f"same first {at - 16} of 64 tokens (then logits {gap:.3f} apart, of {logits.std().item():.2f} std)"
    return ["Qwen2.5-0.5B-shaped, bf16, greedy, 16 → 64 tokens", "tokens/s", f"{rate['attnkit']:.1f}",
            f"{rate['hf']:.1f}", rate["attnkit"] / rate["hf"], same, times]


CHAT_HISTORY, CHAT_USER, CHAT_REPLY = 1024, 32, 32


@functools.cache
def _qwen2_chat(repeats: int) -> tuple[dict, dict]:
    """Seconds per chat turn of attnkit (``PromptCache``), HF reading the whole conversation, and HF
    given a copy of its cached history; each call a new user message after the same history."""
    import copy

    from transformers import DynamicCache

    from attnkit import PromptCache

    hf, ak = _qwen2()
    g = torch.Generator().manual_seed(3)
    history = torch.randint(0, 151936, (1, CHAT_HISTORY), generator=g)
    turns = [torch.cat([history, torch.randint(0, 151936, (1, CHAT_USER), generator=g)], 1) for _ in range(repeats + 1)]
    cache = PromptCache()
    ak.generate(history, max_new_tokens=1, eos_token_id=None, prompt_cache=cache)  # the turns so far
    with torch.inference_mode():
        hf_history = hf(history, cache=DynamicCache(config=hf.config)).past_key_values
    calls, out = {}, {}

    def turn(name):
        calls[name] = calls.get(name, -1) + 1
        return turns[calls[name]]

    def run_ak():
        out["ak"] = ak.generate(turn("ak"), max_new_tokens=CHAT_REPLY, eos_token_id=None, prompt_cache=cache)

    def hf_kwargs(ids):
        return dict(attention_mask=torch.ones_like(ids), max_new_tokens=CHAT_REPLY, do_sample=False, eos_token_id=None,
                    pad_token_id=0)

    def run_hf():
        ids = turn("hf")
        out["hf"] = hf.generate(ids, **hf_kwargs(ids))

    def run_hf_cached():
        ids = turn("hf_cached")
        out["hf_cached"] = hf.generate(ids, cache=copy.deepcopy(hf_history), **hf_kwargs(ids))

    times = alternate({"attnkit": run_ak, "hf": run_hf, "hf_cached": run_hf_cached}, repeats, warmup=1)
    return times, out


def _chat_row(repeats: int, peer: str, what: str) -> list:
    times, out = _qwen2_chat(min(repeats, 3))
    rate = {k: 1 / median(v) for k, v in times.items()}
    start = CHAT_HISTORY + CHAT_USER
    same = int((out["ak"][0, start:] != out[peer][0, start:]).cumsum(0).eq(0).sum())
    return [f"Qwen2.5-0.5B-shaped, bf16, a chat turn: {CHAT_HISTORY} tokens so far + {CHAT_USER}, {CHAT_REPLY} "
            f"new tokens; HF {what}", "turns/s", f"{rate['attnkit']:.2f}", f"{rate[peer]:.2f}",
            rate["attnkit"] / rate[peer], f"same first {same} of {CHAT_REPLY} tokens",
            {"attnkit": times["attnkit"], "hf": times[peer]}]


def qwen2_chat(repeats: int) -> list:
    return _chat_row(repeats, "hf", "reads the whole conversation")


def qwen2_chat_cached(repeats: int) -> list:
    return _chat_row(repeats, "hf_cached", "given a copy of its cached history")


MODERNBERT_TOKENS = 2048


def modernbert(repeats: int) -> list:
    from transformers import ModernBertConfig, ModernBertModel

    torch.manual_seed(0)
    hf = ModernBertModel(ModernBertConfig()).eval()
    ak = _load(hf)
    ids = torch.randint(5, 50000, (1, MODERNBERT_TOKENS), generator=torch.Generator().manual_seed(0))
    out = {}

    @torch.inference_mode()
    def run_ak():
        out["ak"] = ak(ids).last_hidden_state

    @torch.inference_mode()
    def run_hf():
        out["hf"] = hf(input_ids=ids).last_hidden_state

    repeats = min(repeats, 3)  # seconds per call
    times = alternate({"attnkit": run_ak, "hf": run_hf}, repeats, warmup=1)
    rate = {k: MODERNBERT_TOKENS / median(v) for k, v in times.items()}
    diff = (out["ak"] - out["hf"]).abs().max().item()
    return [f"ModernBERT-base, 1 × {MODERNBERT_TOKENS} tokens, forward", "tokens/s", f"{rate['attnkit']:.0f}",
            f"{rate['hf']:.0f}", rate["attnkit"] / rate["hf"], f"max |Δ hidden| {diff:.1e}", times]


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    repeats = 3 if quick else 5
    rows, numbers = [], {}
    for name, fn in (("vit", vit), ("t5", t5), ("whisper", whisper), ("moe", moe), ("moe_greedy", moe_greedy),
                     ("windowed_greedy", windowed_greedy), ("qwen2_greedy", qwen2_greedy),
                     ("qwen2_prefill", qwen2_prefill), ("qwen2_chat", qwen2_chat),
                     ("qwen2_chat_cached", qwen2_chat_cached), ("modernbert", modernbert)):
        what, unit, ours, theirs, ratio, check, times = fn(repeats)
        numbers[f"{name}_vs_hf"] = ratio
        rows.append([what, f"{ours} {unit}", f"{theirs} {unit}", f"**{ratio:.2f}×**", check,
                     f"{spread(times['attnkit'])} / {spread(times['hf'])}"])
    md = table(["model", "attnkit", "HF", "ratio", "same output", "spread"], rows)
    note = (f"Random weights in the released checkpoints' shapes, fp32 unless the row says otherwise, median of "
            f"{repeats} alternating calls (3 for the slower rows) after a warm-up; no target in issue 6 "
            "(for information).")
    return note + "\n\n" + md, numbers


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
