"""The decoding loop: cached decoding equals recomputing the whole sequence (greedy, beam
search, left-padded batches), Hugging Face's generate and logits warpers as references,
sampling, streaming and EOS handling."""

import threading
import warnings

import pytest
import torch

import attnkit
from attnkit import GPT, GPTConfig
from attnkit.errors import InputError
from attnkit.generation import TokenIteratorStreamer, generate, process_logits
from attnkit.generation.processors import Warpers


def tiny(**fields) -> GPT:
    return GPT(GPTConfig.from_preset("gpt-tiny", **fields)).eval()


class Recording:
    """Delegates the decoding protocol to a model and records the logits of every step."""

    def __init__(self, model):
        self.model, self.config, self.logits = model, model.config, []

    def prepare_generation(self, input_ids, attention_mask, expand, max_new_tokens):
        return self.model.prepare_generation(input_ids, attention_mask, expand, max_new_tokens)

    def generation_step(self, input_ids, attention_mask, cache):
        logits = self.model.generation_step(input_ids, attention_mask, cache)
        self.logits.append(logits.clone())
        return logits


class TokenHistory:
    """A fake cache: just the tokens so far. ``reorder`` permutes them like a KV cache's rows."""

    def __init__(self):
        self.ids = None

    def reorder(self, index):
        self.ids = self.ids.index_select(0, index)


class Recompute(Recording):
    """Ignores the KV cache: every step runs the full sequence from its own token history."""

    def prepare_generation(self, input_ids, attention_mask, expand, max_new_tokens):
        ids = input_ids.repeat_interleave(expand, 0)
        mask = None if attention_mask is None else attention_mask.repeat_interleave(expand, 0)
        return ids, mask, TokenHistory()

    def generation_step(self, input_ids, attention_mask, cache):
        cache.ids = input_ids if cache.ids is None else torch.cat([cache.ids, input_ids], 1)
        logits = self.model(cache.ids, attention_mask=attention_mask).logits[:, -1]
        self.logits.append(logits.clone())
        return logits


def left_pad(prompts, pad=0):
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad, dtype=torch.long)
    mask = torch.zeros(len(prompts), T, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, T - len(p):] = torch.tensor(p)
        mask[b, T - len(p):] = 1
    return ids, mask


def frequent_token(model, ids):
    """A token greedy decoding emits, used as EOS so that beams really finish early."""
    out = model.generate(ids, max_new_tokens=8)[:, ids.shape[1]:]
    return int(out.flatten().mode().values)


def assert_same_run(a: Recording, b: Recording, out_a, out_b):
    assert torch.equal(out_a, out_b)
    assert len(a.logits) == len(b.logits)
    for la, lb in zip(a.logits, b.logits):
        torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", [{}, dict(positional="rotary", n_kv_heads=2), dict(positional="alibi")])
def test_greedy_with_cache_matches_recompute(variant):
    model = tiny(**variant)
    ids = torch.randint(0, 256, (2, 5))
    cached, full = Recording(model), Recompute(model)
    assert_same_run(cached, full, generate(cached, ids, max_new_tokens=10), generate(full, ids, max_new_tokens=10))


@pytest.mark.parametrize("num_beams,length_penalty,early_stopping", [
    (3, 1.0, False), (4, 0.5, True), (2, 2.0, "never"),
])
def test_beam_search_with_cache_matches_recompute(num_beams, length_penalty, early_stopping):
    model = tiny()
    ids = torch.randint(0, 256, (2, 4))
    eos = frequent_token(model, ids)
    kw = dict(max_new_tokens=8, num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
              eos_token_id=eos)
    cached, full = Recording(model), Recompute(model)
    assert_same_run(cached, full, generate(cached, ids, **kw), generate(full, ids, **kw))


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_batch_with_cache_matches_recompute(num_beams):
    model = tiny(positional="rotary")
    ids, mask = left_pad([[5, 6, 7, 8, 9], [3, 4], [11]])
    cached, full = Recording(model), Recompute(model)
    kw = dict(max_new_tokens=6, num_beams=num_beams, attention_mask=mask)
    assert_same_run(cached, full, generate(cached, ids, **kw), generate(full, ids, **kw))


@pytest.mark.parametrize("variant", [{}, dict(positional="alibi"), dict(positional="rotary", norm="rmsnorm")])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_batch_generates_what_each_prompt_does_alone(variant, num_beams):
    model = tiny(**variant)
    prompts = [[5, 6, 7, 8, 9], [3, 4], [11]]
    ids, mask = left_pad(prompts)
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=num_beams)
    T = ids.shape[1]
    for b, p in enumerate(prompts):
        alone = model.generate(torch.tensor([p]), max_new_tokens=6, num_beams=num_beams)
        assert batch[b, T:].tolist() == alone[0, len(p):].tolist()


def test_greedy_and_beam_search_equal_transformers_generate(hf_gpt2_twin):
    ours, hf = hf_gpt2_twin()
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10], [3, 4, 1]])
    eos = frequent_token(ours, ids[:1])
    for kw in (dict(num_beams=1), dict(num_beams=3), dict(num_beams=4, length_penalty=0.3, early_stopping=True),
               dict(num_beams=2, length_penalty=1.5, early_stopping="never"),
               dict(num_beams=3, length_penalty=-1.0, eos_token_id=[eos, 17, 200])):
        # pad_token_id=1, not 0: HF's beam search fills with `pad_token_id or eos`, so it ignores a pad id of 0.
        kw = {"max_new_tokens": 8, "eos_token_id": eos, "pad_token_id": 1, "attention_mask": mask, **kw}
        expected = hf.generate(ids, do_sample=False, **kw)
        assert ours.generate(ids, **kw).tolist() == expected.tolist(), kw


# top_k is always given: transformers falls back to top_k=50 when it is not (attnkit: no top-k).
@pytest.mark.parametrize("kw", [
    dict(temperature=0.8, top_k=20, top_p=0.9),
    dict(top_k=0, top_p=0.5),
    dict(num_beams=3, top_k=20),
    dict(num_beams=2, temperature=0.7, top_p=0.9, top_k=0),
    dict(num_beams=3, top_k=1),  # beam sampling keeps at least 1 + (number of EOS ids) tokens
    dict(temperature=1.2, top_k=0, min_p=0.1),
    dict(num_beams=2, top_k=0, top_p=0.95, min_p=0.05),
    dict(top_k=0, typical_p=0.6), dict(top_k=0, epsilon_cutoff=0.01), dict(top_k=0, eta_cutoff=0.005),
    dict(num_beams=2, top_k=30, typical_p=0.8, epsilon_cutoff=0.002, eta_cutoff=0.002),
])
def test_seeded_sampling_equals_transformers_with_the_same_seed(hf_gpt2_twin, kw):
    ours, hf = hf_gpt2_twin()
    ids = torch.randint(0, 256, (3, 4))
    eos = frequent_token(ours, ids)
    kw = dict(kw, do_sample=True, max_new_tokens=8, eos_token_id=eos, pad_token_id=1)
    torch.manual_seed(123)
    expected = hf.generate(ids, **kw)
    torch.manual_seed(123)
    assert ours.generate(ids, **kw).tolist() == expected.tolist()


@pytest.mark.parametrize("temperature,top_k,top_p,keep,min_p", [
    (1.0, None, None, 1, None), (0.7, None, None, 1, None), (1.0, 5, None, 1, None), (1.0, None, 0.8, 1, None),
    (1.3, 10, 0.6, 1, None), (0.5, 1, 0.99, 1, None), (1.0, 500, 0.05, 1, None), (1.0, 1, None, 2, None),
    (1.0, None, 0.05, 3, None), (1.0, None, None, 1, 0.1), (0.7, 20, 0.9, 1, 0.05), (1.0, None, None, 3, 0.9),
])
def test_process_logits_equals_transformers_warpers(temperature, top_k, top_p, keep, min_p):
    from transformers import MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(4, 300) * 3
    logits[0, :10] = 2.0  # ties at the top
    logits[1, 0] = 30.0  # one dominant token: top-p alone would keep only it
    expected = logits.clone()
    if temperature != 1.0:
        expected = TemperatureLogitsWarper(temperature)(None, expected)
    if top_k is not None:
        expected = TopKLogitsWarper(top_k, min_tokens_to_keep=keep)(None, expected)
    if top_p is not None:
        expected = TopPLogitsWarper(top_p, min_tokens_to_keep=keep)(None, expected)
    if min_p is not None:
        expected = MinPLogitsWarper(min_p, min_tokens_to_keep=keep)(None, expected)
    ours = process_logits(logits, temperature, top_k, top_p, min_tokens_to_keep=keep, min_p=min_p)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    torch.testing.assert_close(ours[~torch.isinf(ours)], expected[~torch.isinf(expected)])


@pytest.mark.parametrize("typical_p,epsilon,eta,keep,top_k", [
    (0.5, None, None, 1, None), (0.95, None, None, 3, None), (0.05, None, None, 1, None),
    (None, 0.01, None, 1, None), (None, 0.3, None, 2, None), (None, None, 0.01, 1, None), (None, None, 0.3, 3, None),
    (0.7, 0.001, 0.002, 1, 40),  # after top-k's -inf: entropies and masses of what is left
])
def test_typical_epsilon_and_eta_equal_transformers_warpers(typical_p, epsilon, eta, keep, top_k):
    """Typical (Meister et al. 2023), epsilon and eta sampling (Hewitt et al. 2022) remove the
    tokens ``transformers``' warpers remove, in their order, keeping ``min_tokens_to_keep``."""
    from transformers import EpsilonLogitsWarper, EtaLogitsWarper, TopKLogitsWarper, TypicalLogitsWarper

    logits = torch.randn(4, 300) * 3
    logits[0, :10] = 2.0  # ties
    logits[1, 0] = 30.0  # one dominant token: near-zero entropy
    expected = logits.clone()
    if top_k is not None:
        expected = TopKLogitsWarper(top_k, min_tokens_to_keep=keep)(None, expected)
    if typical_p is not None:
        expected = TypicalLogitsWarper(typical_p, min_tokens_to_keep=keep)(None, expected)
    if epsilon is not None:
        expected = EpsilonLogitsWarper(epsilon, min_tokens_to_keep=keep)(None, expected)
    if eta is not None:
        expected = EtaLogitsWarper(eta, min_tokens_to_keep=keep)(None, expected)
    ours = Warpers(top_k=top_k, typical_p=typical_p, epsilon_cutoff=epsilon, eta_cutoff=eta)(logits, keep)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    assert torch.isinf(ours).any()  # each setting removes something here
    torch.testing.assert_close(ours[~torch.isinf(ours)], expected[~torch.isinf(expected)])


def test_sampled_tokens_stay_inside_top_k():
    model = Recording(tiny())
    out = generate(model, torch.randint(0, 256, (4, 3)), max_new_tokens=8, do_sample=True, top_k=3,
                   generator=torch.Generator().manual_seed(0))
    for step, logits in enumerate(model.logits):
        top3 = logits.topk(3).indices
        assert (top3 == out[:, 3 + step, None]).any(-1).all()


def test_seeded_sampling_is_reproducible_and_top_k_1_is_greedy():
    model = tiny()
    ids = torch.randint(0, 256, (2, 3))
    run = lambda seed: model.generate(ids, max_new_tokens=12, do_sample=True, temperature=1.5,  # noqa: E731
                                      generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    greedy = model.generate(ids, max_new_tokens=12)
    assert torch.equal(model.generate(ids, max_new_tokens=12, do_sample=True, top_k=1), greedy)


def test_stream_yields_the_tokens_generate_returns():
    model = tiny()
    ids, mask = left_pad([[1, 2, 3], [4]])
    steps = list(model.stream(ids, attention_mask=mask, max_new_tokens=7))
    assert len(steps) == 7 and steps[0].shape == (2,)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=7)
    assert torch.equal(torch.stack(steps, 1), out[:, ids.shape[1]:])


def test_token_iterator_streamer_from_a_thread():
    model = tiny()
    ids = torch.randint(0, 256, (1, 4))
    streamer = TokenIteratorStreamer(timeout=60)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("out", model.generate(
        ids, max_new_tokens=9, streamer=streamer)))
    thread.start()
    received = [tokens.clone() for tokens in streamer]
    thread.join()
    assert len(received) == 9
    assert torch.equal(torch.stack(received, 1), result["out"][:, 4:])
    assert list(streamer) == []  # an ended iterator stays exhausted


def test_transformers_streamers_receive_the_prompt_then_each_token(hf_gpt2_twin):
    """Hugging Face's streamer protocol: put(prompt), put(tokens) per step, end()."""
    transformers = pytest.importorskip("transformers")

    class Tok:  # the part of a tokenizer TextIteratorStreamer uses
        def decode(self, ids, **kwargs):
            return "".join(f"<{i}>" for i in ids)

    ours, hf = hf_gpt2_twin()
    ids = torch.randint(0, ours.config.vocab_size, (1, 5))
    texts = []
    for model in (hf, ours):
        streamer = transformers.TextIteratorStreamer(Tok(), skip_prompt=True)
        kwargs = dict(do_sample=False, pad_token_id=0) if model is hf else {}
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, eos_token_id=None,
                             streamer=streamer, **kwargs)
        texts.append("".join(streamer))
        assert texts[-1] == Tok().decode(out[0, 5:].tolist())
    assert texts[0] == texts[1]


def test_token_iterator_streamer_ends_when_generation_fails():
    model = tiny()
    streamer = TokenIteratorStreamer(timeout=60)
    errors = []

    def run():
        try:
            model.generate(torch.zeros(1, 60, dtype=torch.long), max_new_tokens=10, streamer=streamer)
        except InputError as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    assert list(streamer) == []  # the iterator ends instead of waiting for tokens that never come
    thread.join()
    assert len(errors) == 1


class Scripted:
    """A fake model whose greedy choice at step s for row b is ``script[b][s]``."""

    def __init__(self, script, vocab=16):
        self.script, self.config, self.step = script, GPTConfig.from_preset("gpt-tiny", vocab_size=vocab), 0

    def prepare_generation(self, input_ids, attention_mask, expand, max_new_tokens):
        return input_ids, attention_mask, None

    def generation_step(self, input_ids, attention_mask, cache):
        logits = torch.zeros(len(self.script), self.config.vocab_size)
        for b, row in enumerate(self.script):
            logits[b, row[self.step]] = 1.0
        self.step += 1
        return logits


def test_eos_pads_finished_rows_and_stops_when_all_are_done():
    eos = 7
    script = [[5, eos, 9, 9, 9, 9], [4, 4, 4, eos, 9, 9], [2, 2, 2, 2, 2, 2]]
    prompt = torch.ones(3, 2, dtype=torch.long)
    out = generate(Scripted(script), prompt, max_new_tokens=6, eos_token_id=eos, pad_token_id=0)
    assert out[:, 2:].tolist() == [[5, eos, 0, 0, 0, 0], [4, 4, 4, eos, 0, 0], [2, 2, 2, 2, 2, 2]]
    out = generate(Scripted(script[:2]), prompt[:2], max_new_tokens=6, eos_token_id=[eos, 15])
    assert out[:, 2:].tolist() == [[5, eos, eos, eos], [4, 4, 4, eos]]  # stops early; pads with EOS


def test_bad_generation_arguments_are_errors():
    model = tiny()
    ids = torch.randint(0, 256, (1, 3))
    with pytest.raises(InputError, match="streamer is not supported with beam search"):
        model.generate(ids, num_beams=2, streamer=TokenIteratorStreamer())
    with pytest.raises(InputError, match="temperature must be > 0"):
        model.generate(ids, do_sample=True, temperature=0.0)
    with pytest.raises(InputError, match=r"top_p must be in \(0, 1\]"):
        model.generate(ids, do_sample=True, top_p=1.5)
    with pytest.raises(InputError, match="input_ids is empty"):
        model.generate(ids[:, :0])
    with pytest.raises(InputError, match=r"input_ids must lie in \[0, 256\)"):
        model.generate(ids + 300)
    with pytest.raises(InputError, match="max_new_tokens must be an int >= 1, got 0"):
        model.generate(ids, max_new_tokens=0)
    with pytest.raises(InputError, match=r"attention_mask must have shape"):
        model.generate(ids, attention_mask=torch.ones(1, 4, dtype=torch.long))
    for beams in (0, -3, 2.0):
        with pytest.raises(InputError, match="num_beams must be an int >= 1"):
            model.generate(ids, num_beams=beams)
    for early in ("yes", "True", 1):
        with pytest.raises(InputError, match="early_stopping must be True, False or 'never'"):
            model.generate(ids, num_beams=2, early_stopping=early)
    with pytest.raises(InputError, match="input_ids must be int64 or int32"):
        model.generate(ids.to(torch.uint8))
    with pytest.raises(InputError, match=r"top_k must be an int >= 0, got 2.5"):
        model.generate(ids, do_sample=True, top_k=2.5)
    with pytest.raises(InputError, match=r"pad_token_id must be token ids in \[0, 256\)"):
        model.generate(ids, eos_token_id=3, pad_token_id=10**6)
    with pytest.raises(InputError, match=r"eos_token_id must be token ids in \[0, 256\)"):
        model.generate(ids, eos_token_id=[3, -1])
    bert = attnkit.Bert(attnkit.BertConfig.from_preset("bert-tiny"))
    with pytest.raises(InputError, match="Bert cannot generate: it has no decoder"):
        bert.generate(ids)


def test_inputs_and_generator_on_another_device_than_the_model_are_errors():
    """Checked before any work: a prompt, mask or generator left on another device (a CPU
    generator for a model on the GPU, say) is named. The meta device stands in for the GPU."""
    model, ids = tiny(), torch.randint(0, 256, (1, 3))
    with pytest.raises(InputError, match="input_ids is on meta but the model is on cpu"):
        model.generate(ids.to("meta"))
    with pytest.raises(InputError, match="attention_mask is on meta but the model is on cpu"):
        model.generate(ids, attention_mask=torch.ones(1, 3, device="meta"), num_beams=2)
    on_meta = tiny().to("meta")
    with pytest.raises(InputError, match=r"generator is on cpu but the model is on meta; make it with "
                                         r"torch.Generator\(device='meta'\)"):
        next(on_meta.stream(ids.to("meta"), do_sample=True, generator=torch.Generator()))


def test_temperature_is_ignored_without_sampling_and_eos_may_be_a_tensor():
    """As in transformers: greedy decoding ignores temperature."""
    model = tiny()
    ids = torch.randint(0, 256, (2, 3))
    greedy = model.generate(ids, max_new_tokens=5)
    assert torch.equal(model.generate(ids, max_new_tokens=5, temperature=0.0), greedy)
    eos = int(greedy[0, 4])
    assert torch.equal(model.generate(ids, max_new_tokens=5, eos_token_id=torch.tensor(eos)),
                       model.generate(ids, max_new_tokens=5, eos_token_id=eos))


def test_decoding_fills_the_context_exactly_as_transformers_does(hf_gpt2_twin):
    """The last new token is returned, never fed back: a prompt of T tokens can get
    n_positions - T + 1 new ones (the model then sees n_positions positions)."""
    ours, hf = hf_gpt2_twin()
    n = ours.config.n_positions
    ids = torch.randint(0, ours.config.vocab_size, (1, n - 5))
    out = ours.generate(ids, max_new_tokens=6, eos_token_id=None)
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                      eos_token_id=None, pad_token_id=0)
    assert out.shape[1] == n + 1 and torch.equal(out, ref)
    assert torch.equal(ours.generate(ids, max_new_tokens=6, num_beams=2, eos_token_id=None),
                       hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, num_beams=2,
                                   do_sample=False, eos_token_id=None, pad_token_id=0))
    with pytest.raises(InputError, match=rf"a {n - 5}-token prompt and max_new_tokens=7 need {n + 1} positions, more "
                                         rf"than the model's context of {n} \(n_positions\).* at most 6 new tokens"):
        ours.generate(ids, max_new_tokens=7, eos_token_id=None)


def test_a_prompt_padded_on_the_right_is_warned_about_as_in_transformers():
    model = tiny()
    ids = torch.randint(0, 256, (2, 4))
    right = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with pytest.warns(UserWarning, match="padded on the right.*padding_side='left'"):
        model.generate(ids, attention_mask=right, max_new_tokens=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(ids, attention_mask=right.flip(1), max_new_tokens=2)  # left padding: no warning


def test_eos_and_pad_default_to_the_model_config_as_in_transformers(hf_gpt2_twin):
    ours, hf = hf_gpt2_twin()
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10], [3, 4, 1]])
    free = ours.generate(ids, max_new_tokens=8, attention_mask=mask, eos_token_id=None)
    eos = int(free[0, ids.shape[1] + 3])  # a token row 0 makes by its 4th new token
    ours.config = ours.config.replace(eos_token_id=eos, pad_token_id=1)
    hf.generation_config.eos_token_id, hf.generation_config.pad_token_id = eos, 1
    for kw in (dict(num_beams=1), dict(num_beams=3)):
        kw = {"max_new_tokens": 8, "attention_mask": mask, **kw}
        out = ours.generate(ids, **kw)
        assert out.tolist() == hf.generate(ids, do_sample=False, **kw).tolist(), kw
        if kw["num_beams"] == 1:  # the configured EOS really ended row 0, which is padded after it
            k = ids.shape[1] + int((free[0, ids.shape[1]:] == eos).nonzero()[0])
            assert out[0, k] == eos and (out[0, k + 1:] == 1).all() and k + 1 < out.shape[1]
    again = ours.generate(ids, max_new_tokens=8, attention_mask=mask, eos_token_id=None)  # None: no EOS
    assert again.tolist() == free.tolist() != ours.generate(ids, max_new_tokens=8, attention_mask=mask).tolist()
    with pytest.raises(InputError, match='eos_token_id must be a token id'):
        ours.generate(ids, eos_token_id="eos")


@pytest.mark.parametrize("num_beams", [1, 3])
def test_transformers_logits_processors_run_as_in_transformers_generate(hf_gpt2_twin, num_beams):
    """``logits_processor=[...]``: Hugging Face's own processor objects, run after the built-in
    ones, give the tokens ``transformers`` gives with the same processors."""
    from transformers import LogitsProcessorList, SequenceBiasLogitsProcessor

    ours, hf = hf_gpt2_twin()
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10], [3, 4, 1]])
    plain = ours.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=num_beams, eos_token_id=None)
    bias = {(int(plain[0, 7]),): -50.0, (int(plain[1, 6]), 42): 30.0}  # steer away from greedy's choices
    kw = dict(attention_mask=mask, max_new_tokens=8, num_beams=num_beams, eos_token_id=None, pad_token_id=1,
              repetition_penalty=1.3)
    expected = hf.generate(ids, do_sample=False, logits_processor=LogitsProcessorList(
        [SequenceBiasLogitsProcessor(bias)]), **kw)
    got = ours.generate(ids, logits_processor=[SequenceBiasLogitsProcessor(bias)], **kw)
    assert got.tolist() == expected.tolist() and not torch.equal(got, plain)
    seen = []
    ours.generate(ids, attention_mask=mask, max_new_tokens=3, logits_processor=[lambda s, x: seen.append(s.clone()) or x])
    assert [s.shape for s in seen] == [(2, 6), (2, 7), (2, 8)] and torch.equal(seen[0], ids)  # the sequence so far
    with pytest.raises(attnkit.InputError, match="logits_processor must be a list of callables"):
        ours.generate(ids, logits_processor=SequenceBiasLogitsProcessor(bias))


def test_openai_penalties_follow_openais_formula():
    """frequency_penalty · count + presence_penalty · [count > 0] subtracted over the generated
    tokens only (after the prompt), and logit_bias added, token by token as OpenAI writes it."""
    from attnkit.generation.processors import OpenAIPenalties

    ids = torch.tensor([[5, 5, 7, 5, 9, 9], [1, 2, 3, 3, 3, 4]])  # the first 2 of each row are the prompt
    scores = torch.randn(2, 12)
    out = OpenAIPenalties(2, frequency=0.5, presence=0.25, logit_bias={3: -100.0, 11: 2.5})(ids, scores)
    expected = scores.clone()
    for b in range(2):
        generated = ids[b, 2:].tolist()
        for t in set(generated):
            expected[b, t] -= 0.5 * generated.count(t) + 0.25
        expected[b, 3] -= 100.0
        expected[b, 11] += 2.5
    torch.testing.assert_close(out, expected)
    assert torch.equal(OpenAIPenalties(6, frequency=1.0)(ids, scores), scores)  # nothing generated yet
