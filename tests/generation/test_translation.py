"""``translate``: the paper's decoding settings around the shared beam search."""

import pytest
import torch

from attnkit import InputError
from attnkit.generation.translation import translate
from attnkit.models.t5 import T5, T5Config
from attnkit.models.transformer import Transformer, TransformerConfig
from attnkit.tokenizers import Tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train_bpe(["one two three\neins zwei drei"], vocab_size=270,
                               special_tokens=("<pad>", "<s>", "</s>", "<unk>"))


def model_for(tokenizer, eos_bias=None):
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, n_positions=128, d_model=16, n_heads=2, d_ff=32,
                               n_encoder_layers=1, n_decoder_layers=1, dropout=0.0, final_logits_bias=True,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id)
    model = Transformer(config).eval()
    if eos_bias is not None:
        with torch.no_grad():
            model.final_logits_bias[0, tokenizer.eos_token_id] = eos_bias
    return model


def test_output_length_is_capped_at_input_length_plus_50(tokenizer):
    model = model_for(tokenizer, eos_bias=-1e4)  # never ends on its own
    calls = []
    original = model.generate
    model.generate = lambda ids, **kw: calls.append((ids.shape, kw["max_new_tokens"])) or original(ids, **kw)
    texts = ["one", "one two three one two"]
    translate(model, tokenizer, texts, batch_size=1)
    for (shape, max_new) in calls:
        assert max_new == shape[1] + 50  # source tokens (with EOS) + 50
    assert sorted(s[1] for s, _ in calls) == sorted(len(tokenizer.encode(t)) + 1 for t in texts)
    decoded = []

    class Recording:  # the tokenizer, recording how many tokens each translation has
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def decode(self, tokens, **kw):
            decoded.append(len(tokens))
            return tokenizer.decode(tokens, **kw)

    translate(model, Recording(), texts, batch_size=2)  # one search for both, each cut to its own limit
    assert decoded == [len(tokenizer.encode(t)) + 1 + 50 for t in texts]


def test_batched_translation_equals_one_at_a_time_and_keeps_order(tokenizer):
    model = model_for(tokenizer, eos_bias=1.0)
    texts = ["one two three one", "two", "three one", "one one two"]
    batched = translate(model, tokenizer, texts, batch_size=3)
    single = [translate(model, tokenizer, [t], batch_size=1)[0] for t in texts]
    assert batched == single


def test_empty_and_too_long_sources_are_errors(tokenizer):
    model = model_for(tokenizer)
    with pytest.raises(InputError, match="source sentence 1 is empty"):
        translate(model, tokenizer, ["one", "  "])
    with pytest.raises(InputError, match="n_positions"):
        translate(model, tokenizer, ["one " * 200])


def test_t5_translates_without_a_position_limit(tokenizer):
    """T5 has relative positions, no n_positions: the search runs to source length + 50."""
    config = T5Config.from_preset("t5-tiny", vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    model = T5(config).eval()
    texts = ["one two three one", "two", "three one"]
    batched = translate(model, tokenizer, texts, batch_size=2)
    assert batched == [translate(model, tokenizer, [t], batch_size=1)[0] for t in texts]
