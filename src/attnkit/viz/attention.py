"""Looking at attention: every layer's and head's attention weights for a text
(:func:`attention_maps`), drawn as a heat map (:func:`plot_attention`, PNG through matplotlib)
or put into a self-contained HTML page to browse layer by layer and head by head
(:func:`attention_html`, no dependencies, works offline).

The weights are the model's own (``output_attentions=True``: the reference attention path,
equal to the fused one), so row ``t`` of a map is the distribution query token ``t`` puts over
the key tokens and sums to 1 over the keys it may see.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from attnkit.errors import InputError
from attnkit.generation.text import encode_input
from attnkit.models.base import eval_mode


@dataclass
class AttentionMaps:
    """Attention weights ``maps`` ``(L, H, T, S)`` of one kind of attention, with the query tokens
    (``rows``, ``T``) and key tokens (``columns``, ``S``) as text."""

    kind: str  # "self" (GPT, BERT, ESM), or "encoder", "decoder", "cross" (encoder-decoder models)
    rows: list[str]
    columns: list[str]
    maps: torch.Tensor

    def select(self, layer: int, head: int | None = None) -> torch.Tensor:
        """One layer's ``(T, S)`` map of ``head``, or the mean over its heads when ``head`` is None."""
        L, H = self.maps.shape[:2]
        if not -L <= layer < L:
            raise InputError(f"layer must be in [0, {L}) (or negative from the end), got {layer}")
        if head is not None and not -H <= head < H:
            raise InputError(f"head must be in [0, {H}) (or None for the mean of the heads), got {head}")
        per_layer = self.maps[layer]
        return per_layer.mean(0) if head is None else per_layer[head]


def _token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each id as readable text: decoded alone (byte-level BPE's ``Ġthe`` reads `` the``), else its
    vocabulary entry (special tokens, pieces of a UTF-8 character)."""
    out = []
    for i in ids:
        text = tokenizer.decode([i])
        out.append(text if text and "\ufffd" not in text else (tokenizer.id_to_token(i) or f"<{i}>"))
    return out


@torch.no_grad()
def attention_maps(model, tokenizer, text: str, target: str | None = None,
                   max_new_tokens: int = 50) -> dict[str, AttentionMaps]:
    """The attention weights of ``model`` reading ``text``, by kind.

    Decoder-only models (GPT) and encoders (BERT, ESM) give ``{"self": ...}``. Encoder-decoder
    models (T5, the translation Transformer) give ``"encoder"``, ``"decoder"`` and ``"cross"``
    maps for the output ``target`` under teacher forcing, or, without a target, for the output
    the model generates greedily (at most ``max_new_tokens``); decoder rows are labelled with
    the token each position predicts. Their source and target end with EOS (:func:`encode_input`)."""
    if not isinstance(text, str) or not text:
        raise InputError(f"text must be a non-empty string, got {text!r}")
    if getattr(model, "main_input_name", "input_ids") != "input_ids":
        raise InputError(f"{type(model).__name__} reads {model.main_input_name}, not text: attention_maps takes "
                         "models that read token ids")
    with eval_mode(model):
        ids = torch.tensor([encode_input(model, tokenizer, text)], device=model.device)
        words = _token_texts(tokenizer, ids[0].tolist())
        if not hasattr(model, "decoder_start_ids"):
            out = model(ids, output_attentions=True)
            return {"self": AttentionMaps("self", words, words, _stack(out.attentions))}
        if target is None:
            produced = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)[0, 1:]
        else:
            produced = torch.tensor(encode_input(model, tokenizer, target), device=model.device)  # ends with EOS
        start = model.decoder_start_ids(1, model.device)
        decoder_input_ids = torch.cat([start, produced[None, :-1]], dim=1)  # teacher forcing: shifted right
        out = model(ids, decoder_input_ids=decoder_input_ids, output_attentions=True)
        outputs = _token_texts(tokenizer, produced.tolist())
        return {"encoder": AttentionMaps("encoder", words, words, _stack(out.encoder_attentions)),
                "decoder": AttentionMaps("decoder", outputs, outputs, _stack(out.attentions)),
                "cross": AttentionMaps("cross", outputs, words, _stack(out.cross_attentions))}


def _stack(attentions) -> torch.Tensor:
    """Per-layer ``(1, H, T, S)`` weights -> ``(L, H, T, S)`` float32 on the CPU."""
    return torch.cat(attentions).float().cpu()


def plot_attention(maps: AttentionMaps, layer: int = -1, head: int | None = None,
                   path: str | os.PathLike | None = None, title: str | None = None):
    """A heat map of one layer's map (``head``, or the mean of the heads), key tokens along x and
    query tokens down y; written to ``path`` (PNG, or any format matplotlib knows by the
    suffix) when given. Returns the matplotlib ``Figure``. Needs matplotlib (``pip install
    attnkit[viz]``); uses no global pyplot state, so it is safe in servers and threads."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("plot_attention needs matplotlib: pip install 'attnkit[viz]' (or pip install matplotlib); "
                         "attention_html needs nothing") from None
    weights = maps.select(layer, head).numpy()
    T, S = weights.shape
    size = (max(4.0, 0.35 * S + 1.5), max(3.5, 0.35 * T + 1.0))
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-9), aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(S), [repr(w)[1:-1] for w in maps.columns], rotation=90, fontsize=8)
    ax.set_yticks(range(T), [repr(w)[1:-1] for w in maps.rows], fontsize=8)
    heads = "mean of heads" if head is None else f"head {head % maps.maps.shape[1]}"
    ax.set_title(title or f"{maps.kind} attention, layer {layer % maps.maps.shape[0]}, {heads}", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 0; }}
td.cell {{ width: 18px; height: 18px; border: 1px solid #fff; }}
th {{ font: 12px monospace; font-weight: normal; white-space: pre; padding: 0 4px; }}
th.col {{ writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; padding: 4px 0; }}
#info {{ font: 12px monospace; height: 1.5em; }}
</style></head><body>
<h1>{title}</h1>
<p>Row: the query token; column: the key token it attends to; darker = more weight (each row sums to 1).</p>
<p><label>attention <select id="kind"></select></label>
<label>layer <select id="layer"></select></label>
<label>head <select id="head"></select></label></p>
<div id="info"></div><div id="grid"></div>
<script id="attention-data" type="application/json">{data}</script>
<script>
const data = JSON.parse(document.getElementById("attention-data").textContent);
const $ = (id) => document.getElementById(id);
function options(select, values, labels) {{
  select.replaceChildren(...values.map((v, i) => new Option(labels ? labels[i] : v, v)));
}}
function current() {{ return data[$("kind").value]; }}
function draw() {{
  const a = current(), layer = +$("layer").value, head = $("head").value;
  const heads = a.maps[layer];
  const rows = a.rows.length, cols = a.columns.length;
  const table = document.createElement("table");
  const header = table.insertRow();
  header.appendChild(document.createElement("th"));
  for (const c of a.columns) {{
    const th = document.createElement("th"); th.className = "col"; th.textContent = c; header.appendChild(th);
  }}
  for (let t = 0; t < rows; t++) {{
    const tr = table.insertRow();
    const th = document.createElement("th"); th.textContent = a.rows[t]; tr.appendChild(th);
    for (let s = 0; s < cols; s++) {{
      let w = 0;
      if (head === "mean") {{ for (const h of heads) w += h[t][s]; w /= heads.length; }} else w = heads[+head][t][s];
      const td = tr.insertCell(); td.className = "cell";
      td.style.background = `rgba(30, 60, 160, ${{Math.min(1, w).toFixed(4)}})`;
      td.title = `${{a.rows[t]}} -> ${{a.columns[s]}}: ${{w.toFixed(4)}}`;
      td.onmouseover = () => {{ $("info").textContent = td.title; }};
    }}
  }}
  $("grid").replaceChildren(table);
}}
function pickKind() {{
  const a = current();
  options($("layer"), a.maps.map((_, i) => i));
  $("layer").value = a.maps.length - 1;
  options($("head"), ["mean", ...a.maps[0].map((_, i) => i)], ["mean of heads", ...a.maps[0].map((_, i) => i)]);
  draw();
}}
options($("kind"), Object.keys(data));
$("kind").onchange = pickKind; $("layer").onchange = draw; $("head").onchange = draw;
pickKind();
</script></body></html>
"""


def attention_html(maps: dict[str, AttentionMaps], path: str | os.PathLike | None = None,
                   title: str = "attnkit attention", decimals: int = 4) -> str:
    """A self-contained HTML page (no scripts or styles from elsewhere) to browse ``maps`` (from
    :func:`attention_maps`) by kind, layer and head or the mean of the heads; hovering a cell
    shows its tokens and weight. Weights are rounded to ``decimals``. Token text is data, never
    markup: a token such as ``</script>`` is escaped. Written to ``path`` when given (UTF-8);
    returns the page."""
    if not maps:
        raise InputError("attention_html needs at least one AttentionMaps")
    payload = {kind: dict(rows=m.rows, columns=m.columns, maps=m.maps.round(decimals=decimals).tolist())
               for kind, m in maps.items()}
    # Inside <script>, "</script" would end the element and "<!--" change how it is parsed: "<" can
    # only stand inside JSON strings, where "\u003c" means the same.
    data = json.dumps(payload, ensure_ascii=False).replace("<", "\\u003c")
    page = _PAGE.format(title=html.escape(title), data=data)
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page
