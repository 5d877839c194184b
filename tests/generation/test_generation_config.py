"""generation_config.json: a checkpoint's decoding defaults give Hugging Face's tokens when a
call leaves the arguments unset, round-trip through save_pretrained, and bad files are named."""

import json
import warnings

import pytest
import torch

import attnkit
from attnkit import ConfigError, InputError
from attnkit.generation import GenerationConfig

transformers = pytest.importorskip("transformers")

from tests.interop.test_gpt2_interop import EOS, PAD as GPT_PAD, hf_gpt2  # noqa: E402
from tests.interop.test_marian import PAD, padded_source, random_marian  # noqa: E402


def marian_preferring_pad(tmp_path, seed, **generation):
    """A random Marian whose logits favour the padding token, saved with ``generation``."""
    hf = random_marian(tmp_path, seed=seed, forced_eos_token_id=0)
    with torch.no_grad():
        hf.final_logits_bias[0, PAD] += 8.0
    hf.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=0, forced_eos_token_id=0, **generation)
    hf.save_pretrained(tmp_path)
    return hf


@pytest.mark.parametrize("seed, renormalize", [(0, True), (1, True), (2, False)])
def test_marian_checkpoint_defaults_give_transformers_tokens(tmp_path, seed, renormalize):
    """OPUS-MT style: beams, max_length and the padding token banned come from the file."""
    hf = marian_preferring_pad(tmp_path, seed, num_beams=3, max_length=9, bad_words_ids=[[PAD]], length_penalty=0.6,
                               renormalize_logits=renormalize)
    model = attnkit.from_pretrained(tmp_path)
    assert model.generation_config.num_beams == 3 and model.generation_config.bad_words_ids == ((PAD,),)
    src, mask = padded_source()
    expected = hf.generate(input_ids=src, attention_mask=mask)
    assert expected.shape[1] <= 9
    assert torch.equal(model.generate(src, attention_mask=mask), expected)
    # the ban has teeth: without it the favoured padding token is generated
    greedy = dict(attention_mask=mask, num_beams=1, eos_token_id=None, forced_eos_token_id=None)  # no padding rows
    assert (model.generate(src, bad_words_ids=[], **greedy)[:, 1:] == PAD).any()
    assert not (model.generate(src, **greedy)[:, 1:] == PAD).any()


def test_call_arguments_win_over_the_generation_config(tmp_path):
    hf = marian_preferring_pad(tmp_path, 0, num_beams=3, max_length=9, bad_words_ids=[[PAD]])
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    kw = dict(num_beams=1, max_new_tokens=5, bad_words_ids=[[PAD], [7]])
    assert torch.equal(model.generate(src, attention_mask=mask, **kw), hf.generate(input_ids=src, attention_mask=mask, **kw))


def test_gpt2_max_length_counts_the_prompt_and_suppress_tokens_apply(tmp_path):
    hf = hf_gpt2()
    ids = torch.randint(2, 90, (2, 5), generator=torch.Generator().manual_seed(0))
    favourite = int(hf.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=GPT_PAD)[:, 5:].flatten().mode().values)
    hf.generation_config = transformers.GenerationConfig(max_length=13, suppress_tokens=[favourite], eos_token_id=EOS,
                                                         pad_token_id=GPT_PAD, bos_token_id=EOS)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    expected = hf.generate(ids, attention_mask=torch.ones_like(ids))
    assert expected.shape[1] == 13 and not (expected[:, 5:] == favourite).any()
    assert torch.equal(model.generate(ids), expected)
    with pytest.raises(InputError, match="max_length=13 leaves no room"):
        model.generate(torch.randint(2, 90, (1, 13)))


def test_call_max_length_and_min_length_count_as_in_transformers(tmp_path):
    """A call's max_length / min_length are totals (the prompt, or the decoder's start token,
    counts); a max_new_tokens from the call or the config wins over them, as in transformers."""
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path / "gpt")
    model = attnkit.from_pretrained(tmp_path / "gpt")
    ids = torch.randint(2, 90, (2, 5), generator=torch.Generator().manual_seed(0))
    eos = int(hf.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=GPT_PAD)[0, -1])  # ends row 0 at once
    for kw in (dict(max_length=12), dict(max_length=12, min_length=9), dict(max_length=12, max_new_tokens=4),
               dict(max_length=9, num_beams=3)):
        kw.update(eos_token_id=eos, pad_token_id=GPT_PAD)
        expected = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, **kw)
        assert torch.equal(model.generate(ids, **kw), expected)
    assert model.generate(ids, max_length=12, min_length=9, eos_token_id=eos).shape[1] == 12  # min_length has teeth
    assert (model.generate(ids, max_length=12, eos_token_id=eos)[0, 5:] == eos).all()
    model.generation_config = GenerationConfig(max_new_tokens=3)
    assert model.generate(ids, max_length=12, eos_token_id=None).shape[1] == 8  # the config's max_new_tokens wins
    with pytest.raises(InputError, match="max_length=5 leaves no room for new tokens after 5 prompt token"):
        attnkit.from_pretrained(tmp_path / "gpt").generate(ids, max_length=5)
    with pytest.raises(InputError, match="min_length must be an int >= 0, got 2.5"):
        model.generate(ids, min_length=2.5)

    marian = random_marian(tmp_path / "marian")  # encoder-decoder: the start token counts
    model = attnkit.from_pretrained(tmp_path / "marian")
    src, mask = padded_source()
    kw = dict(attention_mask=mask, max_length=7, num_beams=2)
    assert torch.equal(model.generate(src, **kw), marian.generate(input_ids=src, **kw))


def test_generation_config_round_trips_through_save_pretrained(tmp_path):
    model = attnkit.GPT(attnkit.GPTConfig(vocab_size=96, n_positions=32, d_model=16, n_layers=1, n_heads=2,
                                          bos_token_id=None, eos_token_id=None))
    assert model.generation_config == GenerationConfig()
    model.generation_config = GenerationConfig(num_beams=3, top_k=7, bad_words_ids=[[5]], eos_token_id=[3, 4])
    model.save_pretrained(tmp_path / "m")
    hf_side = transformers.GenerationConfig.from_pretrained(tmp_path / "m")
    assert (hf_side.num_beams, hf_side.top_k, hf_side.bad_words_ids, hf_side.eos_token_id) == (3, 7, [[5]], [3, 4])
    again = attnkit.from_pretrained(tmp_path / "m")
    assert again.generation_config == model.generation_config
    # a model with no decoding defaults saved over it removes the stale file
    attnkit.GPT(model.config).save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "generation_config.json").exists()
    assert attnkit.from_pretrained(tmp_path / "m").generation_config == GenerationConfig()


def test_legacy_generation_fields_of_config_json_are_read(tmp_path):
    random_marian(tmp_path)
    (tmp_path / "generation_config.json").unlink(missing_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_beams": 4, "max_length": 30,
                                                      "bad_words_ids": [[PAD]]}))
    gen = attnkit.from_pretrained(tmp_path).generation_config
    assert (gen.num_beams, gen.max_length, gen.bad_words_ids, gen.eos_token_id) == (4, 30, ((PAD,),), None)


def test_malformed_or_unsupported_generation_config_is_named(tmp_path):
    random_marian(tmp_path)
    path = tmp_path / "generation_config.json"
    path.write_text(json.dumps({"num_beams": "four"}))
    with pytest.raises(ConfigError, match=r"generation_config\.json.*num_beams"):
        attnkit.from_pretrained(tmp_path)
    path.write_text(json.dumps({"bad_words_ids": [[PAD], [3, 4]], "encoder_repetition_penalty": 1.3, "num_beams": 2}))
    with pytest.warns(UserWarning, match="sets encoder_repetition_penalty, which"):
        model = attnkit.from_pretrained(tmp_path)
    assert model.generation_config.bad_words_ids == ((PAD,), (3, 4)) and model.generation_config.num_beams == 2
    path.write_text(json.dumps({"num_beams": 2, "num_beam_groups": 1, "transformers_version": "5.0"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # settings at their no-op values are not worth a warning
        attnkit.from_pretrained(tmp_path)
    model.generation_config = GenerationConfig(suppress_tokens=[1000])
    with pytest.raises(InputError, match=r"suppress_tokens must be token ids in \[0, 99\)"):
        model.generate(torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(InputError, match="bad_words_ids must be a list of non-empty lists"):
        model.generate(torch.ones(1, 3, dtype=torch.long), bad_words_ids=[[1, 2], []])
    with pytest.raises(InputError, match=r"bad_words_ids must be token ids in \[0, 99\)"):
        model.generate(torch.ones(1, 3, dtype=torch.long), bad_words_ids=[[1, 200]])


PROCESSORS = [dict(repetition_penalty=1.5), dict(repetition_penalty=0.7), dict(no_repeat_ngram_size=2),
              dict(min_new_tokens=6), dict(repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=3)]


@pytest.mark.parametrize("kw", PROCESSORS)
def test_gpt2_processors_equal_transformers(tmp_path, kw):
    """Repetition penalty, no repeated n-grams and min_new_tokens over a left-padded batch."""
    from tests.interop.test_gpt2_interop import padded_batch

    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch("left")
    common = dict(attention_mask=mask, max_new_tokens=12, pad_token_id=GPT_PAD)
    plain = hf.generate(ids, do_sample=False, eos_token_id=None, **common)
    eos = int(plain[:, 9:12].flatten().mode().values)  # made early: a real stop for min_new_tokens to hold off
    expected = hf.generate(ids, do_sample=False, eos_token_id=eos, **common, **kw)
    assert not torch.equal(expected, hf.generate(ids, do_sample=False, eos_token_id=eos, **common))  # it matters
    assert torch.equal(model.generate(ids, eos_token_id=eos, **common, **kw), expected)


@pytest.mark.parametrize("kw", [PROCESSORS[0], PROCESSORS[2], PROCESSORS[3], PROCESSORS[4]])
def test_beam_search_processors_equal_transformers(tmp_path, kw):
    from tests.interop.test_marian import frequent_token

    hf = random_marian(tmp_path, seed=1)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    # min_new_tokens: an EOS the hypotheses make early, which it then holds off
    eos = frequent_token(hf, src, mask) if "min_new_tokens" in kw else 0
    common = dict(attention_mask=mask, num_beams=3, max_new_tokens=10, eos_token_id=eos, length_penalty=0.6)
    expected = hf.generate(input_ids=src, **common, **kw)
    assert not torch.equal(expected, hf.generate(input_ids=src, **common))
    assert torch.equal(model.generate(src, pad_token_id=PAD, **common, **kw), expected)


def test_processor_settings_come_from_the_generation_config(tmp_path):
    hf = marian_preferring_pad(tmp_path, 1, num_beams=3, max_length=10, bad_words_ids=[[PAD]], repetition_penalty=1.4,
                               no_repeat_ngram_size=2, min_length=5)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    assert torch.equal(model.generate(src, attention_mask=mask), hf.generate(input_ids=src, attention_mask=mask))
    for bad in (dict(repetition_penalty=0.0), dict(no_repeat_ngram_size=-1), dict(min_new_tokens=1.5)):
        with pytest.raises(InputError, match=next(iter(bad))):
            model.generate(src, attention_mask=mask, **bad)


@pytest.mark.parametrize("kw", [dict(num_beams=4, num_return_sequences=3, length_penalty=0.6),
                                dict(num_beams=3, num_return_sequences=3, do_sample=True, top_k=10),
                                dict(do_sample=True, num_return_sequences=2, top_k=20)])
def test_num_return_sequences_equals_transformers(tmp_path, kw):
    from tests.interop.test_marian import frequent_token

    hf = random_marian(tmp_path, seed=3)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    kw = dict(kw, max_new_tokens=10, eos_token_id=frequent_token(hf, src, mask))
    torch.manual_seed(5)
    expected = hf.generate(input_ids=src, attention_mask=mask, **kw)
    torch.manual_seed(5)
    got = model.generate(src, attention_mask=mask, pad_token_id=PAD, **kw)
    assert got.shape[0] == 3 * kw["num_return_sequences"] and torch.equal(got, expected)
    if kw.get("num_beams", 1) > 1 and not kw.get("do_sample"):  # the first of each input's n is the best one
        best = model.generate(src, attention_mask=mask, pad_token_id=PAD, **dict(kw, num_return_sequences=1))
        firsts = got[::kw["num_return_sequences"]]
        assert torch.equal(firsts[:, :best.shape[1]], best) and (firsts[:, best.shape[1]:] == PAD).all()
    with pytest.raises(InputError, match="num_return_sequences"):
        model.generate(src, attention_mask=mask, num_return_sequences=2)  # greedy makes one
    with pytest.raises(InputError, match=r"num_return_sequences \(5\) must be at most num_beams \(4\)"):
        model.generate(src, attention_mask=mask, num_beams=4, num_return_sequences=5)


def test_checkpoints_saved_by_attnkit_decode_the_same_in_transformers(tmp_path):
    """transformers reads the special tokens from generation_config.json alone when there is one:
    attnkit writes the model config's there too."""
    marian_preferring_pad(tmp_path / "hf", 0, num_beams=3, max_length=9, bad_words_ids=[[PAD]])
    model = attnkit.from_pretrained(tmp_path / "hf")
    model.save_pretrained(tmp_path / "again")
    hf = transformers.MarianMTModel.from_pretrained(tmp_path / "again")
    src, mask = padded_source()
    assert torch.equal(hf.generate(input_ids=src, attention_mask=mask), model.generate(src, attention_mask=mask))
    gpt = attnkit.GPT(attnkit.GPTConfig(vocab_size=96, n_positions=32, d_model=16, n_layers=1, n_heads=2,
                                        bos_token_id=80, eos_token_id=80, pad_token_id=1))
    gpt.generation_config = GenerationConfig(max_new_tokens=10)
    gpt.save_pretrained(tmp_path / "gpt")
    written = json.loads((tmp_path / "gpt" / "generation_config.json").read_text())
    assert written == {"max_new_tokens": 10, "bos_token_id": 80, "eos_token_id": 80, "pad_token_id": 1}


def test_settings_attnkit_does_not_apply_survive_a_load_and_save(tmp_path):
    hf = hf_gpt2()
    hf.generation_config = transformers.GenerationConfig(bos_token_id=EOS, eos_token_id=EOS, pad_token_id=GPT_PAD,
                                                         bad_words_ids=[[3], [53, 75]], forced_bos_token_id=82)
    hf.save_pretrained(tmp_path / "hf")
    with pytest.warns(UserWarning, match="sets forced_bos_token_id, which"):
        model = attnkit.from_pretrained(tmp_path / "hf")
    assert model.generation_config.bad_words_ids == ((3,), (53, 75))
    model.save_pretrained(tmp_path / "again")
    again = transformers.GenerationConfig.from_pretrained(tmp_path / "again")
    assert again.bad_words_ids == [[3], [53, 75]] and again.forced_bos_token_id == 82 and again.bos_token_id == EOS


def test_left_padding_is_not_penalized_and_an_eos_in_bad_words_stays_allowed(tmp_path):
    """Hugging Face's repetition penalty skips a prompt's left padding; its bad-words processor
    drops [eos] entries."""
    from tests.interop.test_gpt2_interop import padded_batch

    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch("left")
    fav = int(hf.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=GPT_PAD,
                          eos_token_id=None)[:, 9:].flatten().mode().values)
    ids = ids.masked_fill(mask == 0, fav)  # padding with the token greedy decoding favours: penalizing it would show
    for kw in (dict(num_beams=1), dict(num_beams=3)):
        kw.update(attention_mask=mask, max_new_tokens=10, repetition_penalty=1.5, pad_token_id=fav)
        assert torch.equal(model.generate(ids, eos_token_id=None, **kw), hf.generate(ids, eos_token_id=None, **kw))
        kw.update(repetition_penalty=1.0, bad_words_ids=[[fav], [7]], eos_token_id=fav)
        expected = hf.generate(ids, **kw)
        assert torch.equal(model.generate(ids, **kw), expected)
        if kw["num_beams"] == 1:
            assert (expected[:, 9:] == fav).any()  # EOS still ends rows


@pytest.mark.parametrize("kw", [dict(num_beams=1), dict(num_beams=3), dict(num_beams=1, do_sample=True, top_k=5)])
def test_banned_sequences_of_several_tokens_give_transformers_tokens(tmp_path, kw):
    """A sequence's last token is banned where the ids so far (the prompt and its left padding
    included) end with the rest of it, as Hugging Face's NoBadWordsLogitsProcessor does."""
    from tests.interop.test_gpt2_interop import padded_batch

    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch("left")
    kw = dict(kw, attention_mask=mask, max_new_tokens=10, eos_token_id=None, pad_token_id=GPT_PAD)
    torch.manual_seed(0)
    free = hf.generate(ids, **kw)
    # bigrams and a trigram of the unbanned output, one of them crossing from the prompt into it
    bad = [free[0, 8:10].tolist(), free[1, 11:13].tolist(), free[2, 12:15].tolist(), [int(free[0, 3]), 5]]
    torch.manual_seed(0)
    expected = hf.generate(ids, bad_words_ids=bad, **kw)
    assert not torch.equal(expected, free)  # the bans have teeth
    torch.manual_seed(0)
    assert torch.equal(model.generate(ids, bad_words_ids=bad, **kw), expected)
    model.generation_config = GenerationConfig(bad_words_ids=bad)  # from the config, too
    torch.manual_seed(0)
    assert torch.equal(model.generate(ids, **kw), expected)


def test_translate_is_beam_search_whatever_the_generation_config(tmp_path):
    from attnkit.generation.translation import translate

    class Tok:  # ids as text, one token per word
        eos_token_id, pad_token_id = 0, PAD

        def encode_batch(self, texts, add_special_tokens=False):
            return [[int(w) for w in t.split()] for t in texts]

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    random_marian(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    texts = ["5 6 7 8", "9 10", "11 12 13"]
    plain = translate(model, Tok(), texts, num_beams=3)
    model.generation_config = GenerationConfig(num_return_sequences=2, do_sample=True)
    assert translate(model, Tok(), texts, num_beams=3) == plain


def test_forced_eos_list_and_bad_inputs(tmp_path):
    hf = random_marian(tmp_path, seed=2)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    kw = dict(attention_mask=mask, max_new_tokens=5, forced_eos_token_id=[9, 7])
    got = model.generate(src, **kw)
    assert torch.equal(got, hf.generate(input_ids=src, **kw)) and (got[:, -1] == 7).all()  # the first of the allowed
    for bad, message in ((dict(suppress_tokens=5), "suppress_tokens must be a list of token ids"),
                         (dict(bad_words_ids=5), "bad_words_ids must be a list"),
                         (dict(repetition_penalty=True), "repetition_penalty must be > 0"),
                         (dict(pad_token_id=[1, 2]), "pad_token_id must be one token id")):
        with pytest.raises(InputError, match=message):
            model.generate(src, **bad)
    model.generation_config = {"num_beams": 2}
    with pytest.raises(InputError, match="must be an attnkit.GenerationConfig"):
        model.generate(src)
    with pytest.raises(InputError, match="must be an attnkit.GenerationConfig"):
        model.save_pretrained(tmp_path / "m")


@pytest.mark.parametrize("kw", [dict(num_beams=1), dict(num_beams=1, do_sample=True, top_k=10, temperature=0.7),
                                dict(num_beams=3, length_penalty=0.6, num_return_sequences=2),
                                dict(num_beams=3, repetition_penalty=1.3, bad_words_ids=[[PAD]],
                                     renormalize_logits=True)])
def test_return_dict_in_generate_gives_transformers_scores(tmp_path, kw):
    from tests.interop.test_marian import frequent_token

    hf = random_marian(tmp_path, seed=4)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    kw = dict(kw, attention_mask=mask, max_new_tokens=8, eos_token_id=frequent_token(hf, src, mask),
              return_dict_in_generate=True, output_scores=True, output_logits=True)
    torch.manual_seed(1)
    expected = hf.generate(input_ids=src, **kw)
    torch.manual_seed(1)
    out = model.generate(src, pad_token_id=PAD, **kw)
    assert torch.equal(out.sequences, expected.sequences) and out[0] is out.sequences
    assert len(out.scores) == len(expected.scores) == len(out.logits) == len(expected.logits)
    for ours, theirs in [*zip(out.scores, expected.scores), *zip(out.logits, expected.logits)]:
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    if kw["num_beams"] > 1:
        torch.testing.assert_close(out.sequences_scores, expected.sequences_scores, atol=1e-4, rtol=0)
        assert out.beam_indices.tolist() == expected.beam_indices.tolist()
        assert (out.beam_indices == -1).any() and (out.beam_indices % kw["num_beams"] > 0).any()  # ended early, moved
    else:
        assert "sequences_scores" not in out and "beam_indices" not in out
    for normalize in (False, True):  # each token's score, as transformers reads it from the same output
        torch.testing.assert_close(
            model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=normalize),
            hf.compute_transition_scores(expected.sequences, expected.scores, getattr(expected, "beam_indices", None),
                                         normalize_logits=normalize), atol=1e-4, rtol=0)
    assert isinstance(model.generate(src, attention_mask=mask, max_new_tokens=2), torch.Tensor)


def test_a_checkpoint_that_samples_decodes_as_transformers_does(tmp_path):
    """do_sample/temperature from the file and Hugging Face's unset top_k (50); renormalised
    scores in greedy decoding too."""
    hf = hf_gpt2(vocab_size=200)
    hf.generation_config = transformers.GenerationConfig(do_sample=True, temperature=0.9, max_new_tokens=6,
                                                         eos_token_id=EOS, pad_token_id=GPT_PAD)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids = torch.randint(2, 90, (3, 4), generator=torch.Generator().manual_seed(0))
    kw = dict(attention_mask=torch.ones_like(ids), return_dict_in_generate=True, output_scores=True)
    torch.manual_seed(3)
    expected = hf.generate(ids, **kw)
    torch.manual_seed(3)
    out = model.generate(ids, **kw)
    assert torch.equal(out.sequences, expected.sequences)
    assert int(torch.isfinite(out.scores[0][0]).sum()) == 50  # top-k 50 when nothing sets it, as in Hugging Face
    for ours, theirs in zip(out.scores, expected.scores):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    kw.update(do_sample=False, renormalize_logits=True)
    expected, out = hf.generate(ids, **kw), model.generate(ids, **kw)
    assert torch.equal(out.sequences, expected.sequences)
    for ours, theirs in zip(out.scores, expected.scores):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
        torch.testing.assert_close(ours.logsumexp(-1), torch.zeros(3), atol=1e-5, rtol=0)


def test_generation_config_round_trips_as_a_config_and_takes_numpy_ids(tmp_path):
    import numpy as np

    config = GenerationConfig.from_hf({"num_beams": 3, "bos_token_id": 0, "bad_words_ids": [[5], [6, 7]]}, "file")
    assert GenerationConfig.from_dict(config.to_dict()) == config and GenerationConfig.from_json(config.to_json()) == config
    assert config.to_hf() == {"bos_token_id": 0, "num_beams": 3, "bad_words_ids": [[5], [6, 7]]}
    with pytest.raises(ConfigError, match="early_stopping must be bool or one of 'never' or None"):
        GenerationConfig(early_stopping="nevr")
    for bad, message in ((dict(top_p=1.5), r"top_p: must be None or in \(0, 1\], got 1.5"),
                         (dict(num_beams=0), "num_beams: must be None or an int >= 1, got 0"),
                         (dict(repetition_penalty=0.0), "repetition_penalty: must be None or > 0"),
                         (dict(min_length=-1), "min_length: must be None or an int >= 0")):
        with pytest.raises(ConfigError, match=message):
            GenerationConfig(**bad)
    hf = random_marian(tmp_path, seed=1)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    kw = dict(attention_mask=mask, max_new_tokens=6)
    assert torch.equal(model.generate(src, suppress_tokens=[np.int64(9)], bad_words_ids=[[np.int64(21)]], **kw),
                       hf.generate(input_ids=src, suppress_tokens=[9], bad_words_ids=[[21]], **kw))


def test_decoder_start_token_of_the_generation_config_starts_decoding(tmp_path):
    hf = marian_preferring_pad(tmp_path, 0, num_beams=2, max_length=7)
    hf.generation_config.decoder_start_token_id = 5  # differs from config.json's (the padding token)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    expected = hf.generate(input_ids=src, attention_mask=mask)
    assert (expected[:, 0] == 5).all() and torch.equal(model.generate(src, attention_mask=mask), expected)
    model.generation_config = GenerationConfig(decoder_start_token_id=500)
    with pytest.raises(InputError, match=r"decoder_start_token_id must be in \[0, 99\), got 500"):
        model.generate(src, attention_mask=mask)
