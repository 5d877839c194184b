"""Guessed tokens checked in one pass: prompt lookup decoding (``generate(prompt_lookup_num_tokens=...)``)
and assisted generation (``generate(assistant_model=...)``, speculative decoding with a smaller
model). The tokens and scores of plain greedy decoding and of `transformers`' prompt lookup and
assisted generation, in fewer forward passes when the guesses are right, with the processors,
EOS, length limits and rotary positions; misuse refused."""

import copy
import tempfile

import pytest
import torch

import attnkit
from attnkit import InputError

transformers = pytest.importorskip("transformers")

V = 96


@pytest.fixture(scope="module")
def pair():
    """A GPT-2 with large weights (sharp logits: no near-ties for rounding to flip) in both libraries."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4,
                                                              n_positions=80, bos_token_id=0, eos_token_id=0)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.mul_(4)
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        return attnkit.from_pretrained(d), hf


def prompts(n=4):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        ids = torch.randint(1, V, (1, 20), generator=g)
        yield torch.cat([ids, ids[:, :10]], 1)  # the prompt repeats itself: guesses to find


def counting(model):
    calls = []
    forward = model.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    return counted, calls


@pytest.mark.parametrize("lookup", [1, 3, 10])
def test_tokens_equal_greedy_and_transformers_prompt_lookup_in_fewer_passes(pair, lookup, monkeypatch):
    ak, hf = pair
    counted, calls = counting(ak)
    monkeypatch.setattr(ak, "forward", counted)
    steps = 0
    for ids in prompts():
        plain = ak.generate(ids, max_new_tokens=40, eos_token_id=None)
        calls.clear()
        got = ak.generate(ids, max_new_tokens=40, eos_token_id=None, prompt_lookup_num_tokens=lookup)
        steps += len(calls)
        assert torch.equal(got, plain)
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=40, do_sample=False,
                          prompt_lookup_num_tokens=lookup, eos_token_id=None, pad_token_id=0)
        assert torch.equal(got, ref)
    assert steps < 4 * 40  # guesses were kept: fewer passes than tokens (benchmarks/bench_lookup.py: the speed)


def test_scores_processors_eos_and_the_context_limit(pair):
    ak, _ = pair
    ids = next(prompts())
    kw = dict(max_new_tokens=50, repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=5,
              return_dict_in_generate=True, output_scores=True, output_logits=True)
    for eos in (None, 14, 32):  # ids the model produces: decoding stops there
        plain = ak.generate(ids, eos_token_id=eos, **kw)
        got = ak.generate(ids, eos_token_id=eos, prompt_lookup_num_tokens=4, **kw)
        assert torch.equal(got.sequences, plain.sequences)
        assert len(got.scores) == len(plain.scores) == got.sequences.shape[1] - ids.shape[1]
        for a, b, c, d in zip(got.scores, plain.scores, got.logits, plain.logits):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(c, d, atol=1e-4, rtol=1e-4)
    # 30 + 50 = 80 positions, the model's whole context: the guesses stop at the limit
    assert got.sequences.shape[1] <= 80


def test_stream_yields_the_same_tokens_one_at_a_time(pair):
    ak, _ = pair
    ids = next(prompts())
    plain = ak.generate(ids, max_new_tokens=25, eos_token_id=None)
    tokens = list(ak.stream(ids, max_new_tokens=25, eos_token_id=None, prompt_lookup_num_tokens=5))
    assert all(t.shape == (1,) for t in tokens) and torch.equal(torch.cat(tokens), plain[0, ids.shape[1]:])


def test_rotary_positions_after_rejected_guesses():
    torch.manual_seed(0)
    model = attnkit.Llama(attnkit.LlamaConfig.from_preset("llama-tiny", vocab_size=V)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    for ids in prompts(3):
        plain = model.generate(ids, max_new_tokens=30, eos_token_id=None)
        assert torch.equal(model.generate(ids, max_new_tokens=30, eos_token_id=None, prompt_lookup_num_tokens=6),
                           plain)


def test_longrope_refeeds_where_greedy_decoding_does(longrope_phi3):
    """A LongRoPE model (Phi-3) rebuilds its cache once the sequence passes the original context
    (40 positions here, crossed during decoding): guesses stop short of it, so that prompt lookup
    refeeds at greedy decoding's step and gives its tokens."""
    model = longrope_phi3(40, V, 160)
    assert model.generation_refeed_at() == 40
    for ids in prompts(3):
        plain = model.generate(ids, max_new_tokens=30, eos_token_id=None)
        assert torch.equal(model.generate(ids, max_new_tokens=30, eos_token_id=None, prompt_lookup_num_tokens=6),
                           plain)


def test_misuse_is_refused(pair):
    ak, _ = pair
    ids = next(prompts())
    for kw, match in [
        (dict(prompt_lookup_num_tokens=0), "positive integer"),
        (dict(prompt_lookup_num_tokens=3, num_beams=2), "num_beams=1"),
    ]:
        with pytest.raises(InputError, match=match):
            ak.generate(ids, max_new_tokens=5, **kw)
    with pytest.raises(InputError, match="one prompt at a time"):
        ak.generate(ids.repeat(2, 1), max_new_tokens=5, prompt_lookup_num_tokens=3)
    t5 = attnkit.T5(attnkit.T5Config.from_preset("t5-tiny")).eval()
    with pytest.raises(InputError, match="decoder-only models; T5 does not give"):
        t5.generate(torch.randint(3, 200, (1, 6)), max_new_tokens=5, prompt_lookup_num_tokens=3)
    with pytest.raises(InputError, match="two sources of guesses"):
        ak.generate(ids, max_new_tokens=5, prompt_lookup_num_tokens=3, assistant_model=ak)
    with pytest.raises(InputError, match="num_assistant_tokens needs an assistant_model"):
        ak.generate(ids, max_new_tokens=5, num_assistant_tokens=3)
    other = attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny", vocab_size=V + 1))
    with pytest.raises(InputError, match="share the model's vocabulary: it has 97 tokens, the model 96"):
        ak.generate(ids, max_new_tokens=5, assistant_model=other)
    with pytest.raises(InputError, match="assistant_model must be a decoder-only attnkit model, got T5"):
        ak.generate(ids, max_new_tokens=5, assistant_model=t5)


@pytest.fixture(scope="module")
def assistant(pair):
    """A one-layer GPT-2 with the pair's vocabulary, in both libraries: a poor guesser."""
    torch.manual_seed(1)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=1, n_head=2,
                                                              n_positions=80, bos_token_id=0, eos_token_id=0)).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        return attnkit.from_pretrained(d), hf


def test_assisted_generation_gives_greedy_tokens_and_transformers_assisted_generation(pair, assistant, monkeypatch):
    ak, hf = pair
    small, hf_small = assistant
    for ids in prompts(3):
        plain = ak.generate(ids, max_new_tokens=30, eos_token_id=None)
        for k in (1, 4):
            got = ak.generate(ids, max_new_tokens=30, eos_token_id=None, assistant_model=small, num_assistant_tokens=k)
            assert torch.equal(got, plain)
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=30, do_sample=False,
                          assistant_model=hf_small, eos_token_id=None, pad_token_id=0)
        assert torch.equal(ak.generate(ids, max_new_tokens=30, eos_token_id=None, assistant_model=small), ref)
        tokens = list(ak.stream(ids, max_new_tokens=30, eos_token_id=None, assistant_model=small))
        assert torch.equal(torch.cat(tokens), plain[0, ids.shape[1]:])
    # An assistant that is always right (a copy of the model): every guess is kept and the rounds grow
    # (2, 4, 6, ...), so the model itself runs a handful of passes for 40 tokens.
    ids = next(prompts())
    plain = ak.generate(ids, max_new_tokens=40, eos_token_id=None)
    twin = copy.deepcopy(ak)
    counted, calls = counting(ak)
    monkeypatch.setattr(ak, "forward", counted)
    got = ak.generate(ids, max_new_tokens=40, eos_token_id=None, assistant_model=twin, num_assistant_tokens=2)
    assert torch.equal(got, plain) and len(calls) <= 7


def tiny_lm(seed: int, scale: float) -> attnkit.GPT:
    """A 4-token GPT whose weights are scaled by ``scale`` (larger: sharper distributions)."""
    torch.manual_seed(seed)
    model = attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny", vocab_size=4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def sampled_counts(model, ids, runs: int, **kw) -> torch.Tensor:
    """How often each 3-token continuation of ``ids`` was sampled, over ``runs`` seeds, as ``(4, 4, 4)``."""
    counts = torch.zeros(4, 4, 4)
    for seed in range(runs):
        out = model.generate(ids, max_new_tokens=3, do_sample=True, temperature=1.5, top_k=3, eos_token_id=None,
                             generator=torch.Generator().manual_seed(seed), pack_weights=False, **kw)
        counts[tuple(out[0, ids.shape[1]:].tolist())] += 1
    return counts


def continuation_probs(model, ids) -> torch.Tensor:
    """The exact ``(4, 4, 4)`` distribution of 3 sampled tokens (temperature 1.5, top-k 3), from
    the model's logits over every continuation (the formula, not the decoding loop)."""
    probs = torch.ones(1)
    for n in range(3):
        tails = torch.cartesian_prod(*[torch.arange(4)] * n).reshape(4 ** n, n) if n else torch.zeros(1, 0).long()
        seqs = torch.cat([ids.expand(len(tails), -1), tails], 1)
        with torch.no_grad():
            logits = model(seqs).logits[:, -1]
        step = attnkit.generation.processors.process_logits(logits, 1.5, 3).softmax(-1)
        probs = (probs[:, None] * step).reshape(-1)
    return probs.reshape(4, 4, 4)


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's statistic; infinite when a continuation of probability 0 (removed by top-k) was sampled."""
    expected = probs * counts.sum()
    seen = expected > 0
    if bool(counts[~seen].any()):
        return float("inf")
    return float(((counts[seen] - expected[seen]) ** 2 / expected[seen]).sum())


def test_speculative_sampling_samples_the_models_own_distribution():
    """Assisted generation with ``do_sample``: guesses sampled from a very different assistant are
    kept with probability min(1, p/q), the first rejected one redrawn from max(0, p - q), so the
    3-token continuations follow the model's own distribution (chi-square against the exact
    probabilities; 26 degrees of freedom, whose 1e-4 critical value is 62). Redrawing from p
    instead of max(0, p - q) measures 190 here, keeping every guess is infinite."""
    model, assistant = tiny_lm(0, 6.0), tiny_lm(1, 6.0)
    ids = torch.tensor([[1, 2, 3, 1, 2]])
    probs = continuation_probs(model, ids)
    assert int((probs > 0).sum()) == 27  # top-k 3 of 4 tokens at each of the 3 steps
    far = 0.5 * float((probs - continuation_probs(assistant, ids)).abs().sum())
    assert far > 0.5  # the assistant's guesses are often wrong: rejections and redraws happen
    runs = 1500
    assert chi_square(sampled_counts(model, ids, runs, assistant_model=assistant, num_assistant_tokens=2), probs) < 62
    # The same statistic tells a wrong rule apart: the assistant's own samples are far from the model's.
    assert chi_square(sampled_counts(assistant, ids, runs), probs) > 200


def test_sampled_prompt_lookup_is_plain_sampling(pair):
    """Prompt lookup's guesses have no distribution of their own: each token is sampled from the
    model's as in plain sampling, and a guess is kept when it is that token. The generator's draws
    come in the same order, so the tokens are plain sampling's for the same seed."""
    ak, _ = pair
    for i, ids in enumerate(prompts(3)):
        kw = dict(max_new_tokens=30, eos_token_id=None, do_sample=True, temperature=0.7, top_p=0.9)
        plain = ak.generate(ids, generator=torch.Generator().manual_seed(i), **kw)
        got = ak.generate(ids, generator=torch.Generator().manual_seed(i), prompt_lookup_num_tokens=4, **kw)
        assert torch.equal(got, plain)


def test_speculative_sampling_is_seeded_and_keeps_a_twins_guesses(pair, monkeypatch):
    """With the model's own copy as assistant, p = q and every guess is kept: 40 sampled tokens in
    a handful of passes, the same for the same seed; sampled assisted generation streams them too."""
    ak, _ = pair
    ids = next(prompts())
    twin = copy.deepcopy(ak)
    kw = dict(max_new_tokens=40, eos_token_id=None, do_sample=True, top_k=0)
    counted, calls = counting(ak)
    monkeypatch.setattr(ak, "forward", counted)
    got = ak.generate(ids, assistant_model=twin, num_assistant_tokens=2, generator=torch.Generator().manual_seed(3),
                      **kw)
    assert len(calls) <= 7
    again = ak.generate(ids, assistant_model=twin, num_assistant_tokens=2,
                        generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(got, again)
    streamed = list(ak.stream(ids, assistant_model=twin, num_assistant_tokens=2,
                              generator=torch.Generator().manual_seed(3), **kw))
    assert torch.equal(torch.cat(streamed), got[0, ids.shape[1]:])
