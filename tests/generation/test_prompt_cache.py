"""A KV cache kept between decoding calls (``generate(..., prompt_cache=PromptCache())``): a call
feeds only the prompt tokens after the prefix it shares with the cached sequence, and decodes the
tokens a call without the cache does (greedy, seeded sampling, prompt lookup, ``stream``, with
learned, rotary, ALiBi positions, sliding windows on some layers and Llama 4's chunks); a stream
closed early or a step that fails leaves what the cache holds right; other weights start it over;
what it cannot hold is refused."""

import copy
import dataclasses

import pytest
import torch

from attnkit import GPT, GPTConfig, InputError, PromptCache
from attnkit.generation import BatchedDecoding

V = 97
CONFIGS = {
    "learned": dict(),
    "rotary-gqa-window": dict(positional="rotary", n_kv_heads=2, sliding_window=6, sliding_layers=(0,),
                              norm="rmsnorm"),
    "alibi": dict(positional="alibi"),
    "chunked": dict(positional="rotary", attention_chunk_size=8),
}


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=V, n_layers=2, d_model=64, n_heads=4, n_positions=160, bos_token_id=None,
                    eos_token_id=None, pad_token_id=None, **kw)
    model = GPT(cfg).eval()
    with torch.no_grad():  # large weights: sharp attention, so that a key out of place shows
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.4)
    return model


@pytest.fixture
def fed(monkeypatch):
    """``(model, lengths)``: a GPT whose forward passes note how many tokens each one is fed."""
    def make(**kw):
        model, lengths = tiny(**kw), []
        forward = model.forward

        def counted(input_ids, *args, **kwargs):
            lengths.append(input_ids.shape[1])
            return forward(input_ids, *args, **kwargs)

        monkeypatch.setattr(model, "forward", counted)
        return model, lengths
    return make


def shared(a: torch.Tensor, b: torch.Tensor) -> int:
    """The length of the common prefix of two ``(1, L)`` sequences."""
    n = min(a.shape[1], b.shape[1])
    differ = (a[0, :n] != b[0, :n]).nonzero()
    return int(differ[0]) if len(differ) else n


@pytest.mark.parametrize("name", CONFIGS)
def test_a_conversation_feeds_only_its_new_tokens_and_decodes_as_without_the_cache(fed, name):
    """Each turn continues the last output, or rewrites its end (as a chat template re-encodes a
    reply); the turn's first pass feeds the tokens after the cached ones (all but the last output
    token), at least one, and the output is that of a call without the cache."""
    model, lengths = fed(**CONFIGS[name])
    g = torch.Generator().manual_seed(1)
    cache, previous = PromptCache(), None
    prompt = torch.randint(0, V, (1, 9), generator=g)
    for turn in range(5):
        n = 4 + 3 * turn  # longer calls than the first: the cache grows
        lengths.clear()
        ref = model.generate(prompt, max_new_tokens=n, eos_token_id=None)
        assert lengths[0] == prompt.shape[1]
        lengths.clear()
        out = model.generate(prompt, max_new_tokens=n, eos_token_id=None, prompt_cache=cache)
        assert torch.equal(out, ref), turn
        held = 0 if previous is None else min(shared(prompt, previous[:, :-1]), prompt.shape[1] - 1)
        assert lengths[0] == prompt.shape[1] - held, turn
        assert len(cache) == out.shape[1] - 1 and torch.equal(cache.ids, out[0, :-1])
        previous = out
        if turn == 2:  # the same prompt again: only its last token is fed
            continue
        kept = out[:, :-2] if turn % 2 else out  # rewrite the end of the reply, or keep it whole
        prompt = torch.cat([kept, torch.randint(0, V, (1, 5), generator=g)], 1)


def test_an_edited_earlier_turn_reuses_the_part_before_the_edit(fed):
    model, lengths = fed()
    cache = PromptCache()
    prompt = torch.randint(0, V, (1, 30), generator=torch.Generator().manual_seed(2))
    model.generate(prompt, max_new_tokens=5, eos_token_id=None, prompt_cache=cache)
    edited = prompt.clone()
    edited[0, 12] = (edited[0, 12] + 1) % V
    lengths.clear()
    out = model.generate(edited, max_new_tokens=5, eos_token_id=None, prompt_cache=cache)
    assert lengths[0] == 30 - 12
    assert torch.equal(out, model.generate(edited, max_new_tokens=5, eos_token_id=None))
    other = (prompt + 1) % V  # nothing shared: everything is fed
    lengths.clear()
    out = model.generate(other, max_new_tokens=5, eos_token_id=None, prompt_cache=cache)
    assert lengths[0] == 30 and torch.equal(out, model.generate(other, max_new_tokens=5, eos_token_id=None))


def test_sampling_and_prompt_lookup_give_the_tokens_of_calls_without_the_cache(fed):
    model, lengths = fed()
    g = torch.Generator().manual_seed(3)
    base = torch.randint(0, V, (1, 12), generator=g)
    turns = [torch.cat([base, base[:, :6]], 1)]  # repeats itself: prompt lookup has guesses
    for kw in (dict(do_sample=True, top_k=20), dict(prompt_lookup_num_tokens=3),
               dict(do_sample=True, prompt_lookup_num_tokens=3)):
        cache, prompt = PromptCache(), turns[0]
        for turn in range(3):
            sample = dict(kw, generator=torch.Generator().manual_seed(turn)) if kw.get("do_sample") else kw
            ref = model.generate(prompt, max_new_tokens=12, eos_token_id=None, **sample)
            sample = dict(kw, generator=torch.Generator().manual_seed(turn)) if kw.get("do_sample") else kw
            out = model.generate(prompt, max_new_tokens=12, eos_token_id=None, prompt_cache=cache, **sample)
            assert torch.equal(out, ref), (kw, turn)
            assert torch.equal(cache.ids, out[0, :-1])  # guesses fed but not kept are not held
            prompt = torch.cat([out, base[:, turn:turn + 4]], 1)


def test_a_stream_closed_early_or_a_failed_step_leaves_the_cache_right(fed):
    """The cache holds the tokens fed before the last one a call produced: a stream closed after
    three tokens, or a call whose fifth step fails halfway (the first layer has fed the token, the
    second has not), leaves exactly those, and the next call decodes as one without the cache."""
    model, lengths = fed()
    cache = PromptCache()
    prompt = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(4))
    tokens = model.stream(prompt, max_new_tokens=20, eos_token_id=None, prompt_cache=cache)
    got = [next(tokens) for _ in range(3)]
    tokens.close()
    assert torch.equal(cache.ids, torch.cat([prompt[0], *got[:2]]))

    layer = model.decoder.layers[1]
    forward, steps = layer.forward, []

    def failing(*args, **kwargs):
        steps.append(1)
        if len(steps) == 5:
            raise RuntimeError("out of memory")
        return forward(*args, **kwargs)

    layer.forward = failing
    longer = torch.cat([prompt, torch.stack(got, 1), prompt[:, :4]], 1)
    steps.extend([1] * 4)  # fails in its prefill: the cache holds the shared part still
    with pytest.raises(RuntimeError, match="out of memory"):
        model.generate(longer, max_new_tokens=20, eos_token_id=None, prompt_cache=cache)
    assert torch.equal(cache.ids, longer[0, :12])
    steps.clear()
    with pytest.raises(RuntimeError, match="out of memory"):
        model.generate(longer, max_new_tokens=20, eos_token_id=None, prompt_cache=cache)
    del layer.forward
    assert len(cache) == longer.shape[1] + 4 - 1  # four tokens made; the fourth was being fed
    assert cache.cache.self_attn[0].length == len(cache) + 1  # the first layer had fed it
    again = torch.cat([cache.ids[None], prompt[:, :3]], 1)
    lengths.clear()
    out = model.generate(again, max_new_tokens=6, eos_token_id=None, prompt_cache=cache)
    assert lengths[0] == 3
    assert torch.equal(out, model.generate(again, max_new_tokens=6, eos_token_id=None))


def test_other_weights_start_the_cache_over(fed):
    model, lengths = fed()
    cache = PromptCache()
    prompt = torch.randint(0, V, (1, 16), generator=torch.Generator().manual_seed(5))
    out = model.generate(prompt, max_new_tokens=4, eos_token_id=None, prompt_cache=cache)
    with torch.no_grad():
        model.decoder.layers[1].attn.out_proj.weight.mul_(2)  # as an optimizer step does, in place
    lengths.clear()
    again = model.generate(out, max_new_tokens=4, eos_token_id=None, prompt_cache=cache)
    assert lengths[0] == out.shape[1]
    assert torch.equal(again, model.generate(out, max_new_tokens=4, eos_token_id=None))
    other = tiny()  # the same shapes, another model: its own keys
    with torch.no_grad():
        other.wte.weight.mul_(-1)
    got = other.generate(again, max_new_tokens=4, eos_token_id=None, prompt_cache=cache)
    assert torch.equal(got, other.generate(again, max_new_tokens=4, eos_token_id=None))
    scaled = copy.copy(other)  # the very same tensors in a model that computes otherwise
    scaled.config = dataclasses.replace(other.config, embedding_multiplier=3.0)
    got = scaled.generate(got, max_new_tokens=4, eos_token_id=None, prompt_cache=cache)
    assert torch.equal(got, scaled.generate(got[:, :-4], max_new_tokens=4, eos_token_id=None))
    cache.reset()
    assert len(cache) == 0 and cache.cache is None and cache.ids.numel() == 0


def test_a_model_that_rebuilds_its_cache_feeds_every_call_whole(longrope_phi3):
    """LongRoPE (Phi-3) rotates every position anew past its original context (here 24): cached
    keys from a sequence that crossed it are not a shorter prompt's, so none are reused."""
    model = longrope_phi3(24, V, 96)
    cache = PromptCache()
    prompt = torch.randint(0, V, (1, 20), generator=torch.Generator().manual_seed(6))
    out = model.generate(prompt, max_new_tokens=10, eos_token_id=None, prompt_cache=cache)  # crosses 24
    again = out[:, :22]
    assert torch.equal(model.generate(again, max_new_tokens=10, eos_token_id=None, prompt_cache=cache),
                       model.generate(again, max_new_tokens=10, eos_token_id=None))


def test_what_one_cached_sequence_cannot_be_is_refused():
    from attnkit import Transformer, TransformerConfig

    model, cache = tiny(), PromptCache()
    two = torch.randint(0, V, (2, 5))
    for kw, message in [
        (dict(input_ids=two), "one prompt"),
        (dict(num_beams=2), "one beam"),
        (dict(do_sample=True, num_return_sequences=2), "one sequence to return"),
        (dict(attention_mask=torch.tensor([[0, 1, 1, 1, 1]])), "without padding"),
    ]:
        with pytest.raises(InputError, match=message):
            model.generate(**{"input_ids": two[:1], "prompt_cache": cache, "max_new_tokens": 3, **kw})
    with pytest.raises(InputError, match="attnkit.PromptCache"):
        model.generate(two[:1], max_new_tokens=3, prompt_cache={})
    seq2seq = Transformer(TransformerConfig(vocab_size=V, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
                                            n_decoder_layers=1))
    with pytest.raises(InputError, match="decoder-only"):
        seq2seq.generate(two[:1], max_new_tokens=3, prompt_cache=cache)
    batched = BatchedDecoding(model)
    try:
        with pytest.raises(InputError, match="own DecoderCache"):
            list(batched.model.stream(two[:1], max_new_tokens=3, prompt_cache=cache))
    finally:
        batched.close()
    assert len(cache) == 0


def test_one_call_at_a_time():
    """A call that starts while another one's stream is open is refused (it would write over the
    keys that stream decodes from); the open one goes on undisturbed, and once it ended the next
    call runs."""
    model, cache = tiny(), PromptCache()
    a, b = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(7)).split(1)
    first = model.stream(a, max_new_tokens=6, eos_token_id=None, prompt_cache=cache)
    tokens = [next(first)]
    with pytest.raises(InputError, match="in use"):
        model.generate(b, max_new_tokens=3, eos_token_id=None, prompt_cache=cache)
    tokens += list(first)
    assert torch.equal(torch.cat(tokens), model.generate(a, max_new_tokens=6, eos_token_id=None)[0, 5:])
    assert torch.equal(cache.ids, torch.cat([a[0], *tokens[:-1]]))
    out = model.generate(b, max_new_tokens=3, eos_token_id=None, prompt_cache=cache)
    assert torch.equal(out, model.generate(b, max_new_tokens=3, eos_token_id=None))


def test_a_stream_reports_the_prompt_tokens_it_found_cached(fed):
    """``stream(..., usage_out={})`` gets ``cached_tokens`` (the server's ``cached_tokens`` usage),
    with plain decoding and prompt lookup; 0 without a prompt cache."""
    model, lengths = fed()
    cache = PromptCache()
    prompt = torch.randint(0, V, (1, 12), generator=torch.Generator().manual_seed(8))
    out = model.generate(prompt, max_new_tokens=5, eos_token_id=None, prompt_cache=cache)
    longer = torch.cat([out, prompt[:, :3]], 1)
    for kw, cached in ((dict(prompt_cache=cache), out.shape[1] - 1),
                       (dict(prompt_cache=cache, prompt_lookup_num_tokens=2), longer.shape[1] - 1), ({}, 0)):
        usage, lengths[:] = {}, []
        list(model.stream(longer, max_new_tokens=4, eos_token_id=None, usage_out=usage, **kw))
        assert usage == {"cached_tokens": cached} and lengths[0] == longer.shape[1] - cached, kw
