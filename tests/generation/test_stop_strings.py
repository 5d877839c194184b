"""``generate(stop_strings=..., tokenizer=...)``: a row ends at the token that completes a stop
string (one that overlaps the newest token, whatever the tokens' boundaries), as Hugging Face's
``StopStringCriteria``; rows of a batch end independently and are padded; ``stream`` agrees."""

import pytest
import torch

from attnkit import InputError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair(memorized_gpt, tmp_path_factory):
    """The memorized pangram GPT and its character tokenizer, in both libraries."""
    model, tok = memorized_gpt
    d = tmp_path_factory.mktemp("pangram")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return model, tok, transformers.AutoModelForCausalLM.from_pretrained(d).eval(), \
        transformers.AutoTokenizer.from_pretrained(d)


CASES = [("the quick", ["fox"]),  # within the newest tokens
         ("pack my", ["ox w"]),  # across a space
         ("pack my", ["x wi", "never"]),  # one of several
         ("the", ["y d"]),  # "the lazy dog": not at the first "y" of the continuation, nor the first " "
         ("lazy dog. pack", ["y d", "x w"])]  # in the prompt already: only a new occurrence counts


@pytest.mark.parametrize("prompt,stops", CASES)
def test_a_row_ends_where_transformers_stop_strings_end_it(pair, prompt, stops):
    model, tok, hf, hf_tok = pair
    ids = torch.tensor([tok.encode(prompt)])
    ours = model.generate(ids, max_new_tokens=20, stop_strings=stops, tokenizer=tok, eos_token_id=None)
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, stop_strings=stops,
                             tokenizer=hf_tok, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(ours, theirs)
    assert any(tok.decode(ours[0].tolist()).endswith(s) for s in stops)  # ended early, right at the stop string


def test_batch_rows_end_independently_and_stream_agrees(pair):
    model, tok, _, _ = pair
    prompts = [tok.encode(p) for p, _ in CASES]
    width = max(map(len, prompts))
    ids = torch.tensor([[1] * (width - len(p)) + p for p in prompts])  # left-padded with <pad>
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stops = sorted({s for _, ss in CASES for s in ss})
    out = model.generate(ids, attention_mask=mask, max_new_tokens=20, stop_strings=stops, tokenizer=tok,
                         eos_token_id=None, pad_token_id=1)
    for row, prompt in zip(out, prompts):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=20, stop_strings=stops, tokenizer=tok,
                               eos_token_id=None)[0, len(prompt):]
        new = row[width:]
        assert torch.equal(new[:len(alone)], alone) and bool((new[len(alone):] == 1).all())
    streamed = torch.stack(list(model.stream(ids, attention_mask=mask, max_new_tokens=20, stop_strings=stops,
                                             tokenizer=tok, eos_token_id=None, pad_token_id=1)), dim=1)
    assert torch.equal(streamed, out[:, width:])


def test_stop_strings_misuse_is_refused(pair):
    model, tok, _, _ = pair
    ids = torch.tensor([tok.encode("the")])
    for kw, match in [(dict(stop_strings=["x"]), "needs the tokenizer"),
                      (dict(stop_strings=[""], tokenizer=tok), "non-empty string"),
                      (dict(stop_strings="x", tokenizer=tok, num_beams=2), "not supported with beam search")]:
        with pytest.raises(InputError, match=match):
            model.generate(ids, max_new_tokens=3, **kw)
