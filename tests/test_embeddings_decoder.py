"""attnkit.embed with a decoder-only model (Qwen3-Embedding's layout: a Qwen3 base model saved
without its LM head, last-token pooling, a Normalize module) against sentence-transformers."""

import json

import pytest
import torch

import attnkit
from attnkit.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

SENTENCES = ["the quick brown fox", "jumps over the lazy dog.", "pack my box", "with five dozen liquor jugs!", "ox"]


@pytest.fixture(scope="module")
def qwen3_embedding(tmp_path_factory):
    """A random ``Qwen3Model`` (tied embeddings) with a character tokenizer, saved as a
    sentence-transformers directory: Transformer, Pooling (last token), Normalize."""
    d = tmp_path_factory.mktemp("qwen3-embedding")
    tok = Tokenizer.train_char(SENTENCES)
    torch.manual_seed(0)
    config = transformers.Qwen3Config(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=48,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                      max_position_embeddings=64, tie_word_embeddings=True, pad_token_id=1,
                                      bos_token_id=0, eos_token_id=0)
    base = transformers.Qwen3Model(config).eval()
    with torch.no_grad():
        for n, p in base.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n else p.normal_(0.0, p.shape[-1] ** -0.5)
    base.save_pretrained(d)
    tok.save_pretrained(d)
    (d / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                             "pooling_mode_lasttoken": True}))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    return d


def test_a_decoder_base_model_embeds_as_sentence_transformers_does(qwen3_embedding):
    """The base checkpoint (keys without ``model.``, architecture ``Qwen3Model``) loads as a Qwen3;
    embeddings equal sentence-transformers' (last real token, normalised) on a padded batch, and
    last-token pooling is the decoder's default without the directory's modules too."""
    model = attnkit.from_pretrained(qwen3_embedding)
    assert type(model) is attnkit.Qwen3
    ours = attnkit.embed(qwen3_embedding, SENTENCES, batch_size=3)
    theirs = sentence_transformers.SentenceTransformer(str(qwen3_embedding), device="cpu").encode(
        SENTENCES, convert_to_tensor=True, batch_size=3)
    assert (ours - theirs).abs().max() < 1e-5
    tok = Tokenizer.from_pretrained(qwen3_embedding)
    assert torch.allclose(attnkit.embed(model, SENTENCES, tokenizer=tok), ours, atol=1e-6)
    mean = attnkit.embed(model, SENTENCES, tokenizer=tok, pooling="mean")
    assert (mean - ours).abs().max() > 1e-2  # another pooling, another embedding


def test_an_untied_base_model_is_refused_naming_the_missing_head(tmp_path):
    config = transformers.Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                      tie_word_embeddings=False)
    transformers.Qwen3Model(config).save_pretrained(tmp_path)
    with pytest.raises(attnkit.CheckpointError, match="lm_head.weight"):
        attnkit.from_pretrained(tmp_path)


def test_the_server_embeds_with_a_decoder_when_asked(qwen3_embedding):
    """``make_server(..., embeddings=True)`` (``attnkit serve`` does it for a sentence-transformers
    directory): ``/v1/embeddings`` gives attnkit.embed's vectors through the official client; a
    decoder's server without it answers 404."""
    openai = pytest.importorskip("openai")
    import threading

    from attnkit.serve import make_server

    model, tok = attnkit.from_pretrained(qwen3_embedding), Tokenizer.from_pretrained(qwen3_embedding)
    for embeddings in (True, False):
        server = make_server(model, tok, port=0, name="emb", embeddings=embeddings)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="-",
                                   max_retries=0)
            if embeddings:
                got = client.embeddings.create(model="emb", input=SENTENCES[:3])
                vectors = torch.tensor([d.embedding for d in got.data])
                assert torch.allclose(vectors, attnkit.embed(model, SENTENCES[:3], tokenizer=tok), atol=1e-6)
            else:
                with pytest.raises(openai.NotFoundError, match="does not embed sentences"):
                    client.embeddings.create(model="emb", input=["x"])
        finally:
            server.shutdown()
            server.server_close()
