"""State-dict key tables: how an attnkit parameter name maps to Hugging Face's (and the one
checks every family's config conversion shares, :func:`require_hf_settings` and
:func:`single_token_id`).

A family's mapping is a list of :class:`Rename` rules. Names may contain placeholders such
as ``{i}`` that match a layer number. A rule whose ``hf`` is a tuple fuses several Hugging
Face tensors into one attnkit tensor by concatenation along dim 0 (BERT's query/key/value
-> attnkit's ``qkv_proj``); a rule whose ``native`` is a tuple does the reverse, one Hugging
Face tensor split into several attnkit ones (Phi-3's ``gate_up_proj`` -> attnkit's
``fc_gate`` and ``fc_in``); ``transpose`` flips 2-D weights (GPT-2's ``Conv1D`` stores
``(in, out)``, ``nn.Linear`` stores ``(out, in)``); ``stacked`` reads a 3-D Hugging Face tensor
``(E, out, in)`` (``(E, in, out)`` with ``transpose``) as ``E`` blocks of ``(out, in)`` rows (the
experts of GraniteMoE, Llama 4 and GPT-OSS, each expert's gate and up projections one block;
biases ``(E, out)``), with ``pairs`` its two parts alternating output by output (GPT-OSS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from attnkit.errors import CheckpointError, ConfigError

_PLACEHOLDER = re.compile(r"\\\{(\w+)\\\}")


def _compile(pattern: str) -> re.Pattern:
    return re.compile(_PLACEHOLDER.sub(r"(?P<\1>\\d+)", re.escape(pattern)))


@dataclass(frozen=True)
class Rename:
    """One attnkit name pattern and the Hugging Face name(s) it corresponds to."""

    native: str | tuple[str, ...]
    hf: str | tuple[str, ...]
    transpose: bool = False
    sizes: tuple[int, ...] | None = None  # rows of each part in a fused tensor (default: equal parts)
    # (groups, parts): Hugging Face orders a fused q/k/v tensor's rows group by group, each group's
    # parts - 2 query heads, then its key and value heads, where attnkit's are all queries, all keys,
    # all values (GPT-NeoX's and BLOOM's query_key_value: (heads, 3); Falcon's: (kv heads, q per kv + 2))
    interleaved: tuple[int, int] | None = None
    # E: Hugging Face stacks the parts in one (E, out, in) tensor ((E, in, out) with transpose;
    # biases (E, out)), attnkit's (out, in) Linear weights E blocks after another along dim 0
    # (the experts of Llama 4 and GPT-OSS, transposed, and of GraniteMoE)
    stacked: int | None = None
    # with stacked: each block's two parts alternate output by output (GPT-OSS's gate, up, gate, ...)
    pairs: bool = False
    # Hugging Face keeps a leading dimension of 1 (ERNIE 4.5's (1, E) score bias for attnkit's (E,))
    squeeze: bool = False
    _native_res: tuple[re.Pattern, ...] = field(init=False, repr=False, compare=False)
    _hf_res: tuple[re.Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(self.native_names) > 1 and len(self.hf_names) > 1:
            raise ValueError(f"a rule fuses on one side only: {self.native} <-> {self.hf}")
        object.__setattr__(self, "_native_res", tuple(_compile(n) for n in self.native_names))
        object.__setattr__(self, "_hf_res", tuple(_compile(h) for h in self.hf_names))

    @property
    def hf_names(self) -> tuple[str, ...]:
        return self.hf if isinstance(self.hf, tuple) else (self.hf,)

    @property
    def native_names(self) -> tuple[str, ...]:
        return self.native if isinstance(self.native, tuple) else (self.native,)

    def _split(self, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A fused tensor's parts along dim 0 (``sizes``, else equal)."""
        n = max(len(self.hf_names), len(self.native_names))
        return tensor.split(list(self.sizes), dim=0) if self.sizes else tensor.chunk(n, dim=0)

    def _flip(self, t: torch.Tensor) -> torch.Tensor:
        return t.t() if self.transpose and t.dim() == 2 else t

    def _unstack(self, t: torch.Tensor) -> torch.Tensor:
        """A stacked Hugging Face tensor ``(E, out, in)`` (``(E, in, out)`` with ``transpose``;
        biases ``(E, out)``) as attnkit's parts one after another, ``(E * out, in)`` (``(E * out,)``)."""
        bias = t.dim() == 2
        t = t.unsqueeze(-1) if bias else t.transpose(1, 2) if self.transpose else t  # (E, out, in)
        if self.pairs:  # outputs alternate between the two parts: the first part's, then the second's
            t = t.unflatten(1, (-1, 2)).transpose(1, 2)
        t = t.reshape(-1, t.shape[-1])
        return t.squeeze(-1) if bias else t

    def _stack(self, t: torch.Tensor) -> torch.Tensor:
        """:meth:`_unstack` reversed."""
        bias = t.dim() == 1
        t = (t.unsqueeze(-1) if bias else t).reshape(self.stacked, -1, 1 if bias else t.shape[-1])  # (E, out, in)
        if self.pairs:
            t = t.unflatten(1, (2, -1)).transpose(1, 2).flatten(1, 2)
        return t.squeeze(-1) if bias else t.transpose(1, 2) if self.transpose else t

    def _regroup(self, t: torch.Tensor, to_hf: bool) -> torch.Tensor:
        """Rows from attnkit's q/k/v order (all query heads, all key heads, all value heads) to
        Hugging Face's group by group (each group's ``parts - 2`` query heads, its key head, its
        value head), or back."""
        if self.interleaved is None:
            return t
        groups, parts = self.interleaved
        if t.shape[0] % (groups * parts):
            raise CheckpointError(f"a tensor of shape {tuple(t.shape)} does not split into {groups} groups of {parts} "
                                  "heads along its first dimension")
        q = parts - 2
        if to_hf:
            heads = t.reshape(groups * parts, -1, *t.shape[1:])
            by_group = [heads[:groups * q].reshape(groups, q, *heads.shape[1:]),
                        heads[groups * q:].reshape(2, groups, *heads.shape[1:]).transpose(0, 1)]
            return torch.cat(by_group, dim=1).reshape(t.shape)
        heads = t.reshape(groups, parts, -1, *t.shape[1:])
        return torch.cat([heads[:, :q].flatten(0, 1), heads[:, q], heads[:, q + 1]]).reshape(t.shape)


def _find(rules: list[Rename], name: str) -> tuple[Rename, dict, int]:
    """The rule for attnkit parameter ``name``, its placeholders, and which of the rule's native names it is."""
    for rule in rules:
        for j, rx in enumerate(rule._native_res):
            m = rx.fullmatch(name)
            if m:
                return rule, m.groupdict(), j
    raise CheckpointError(f"no Hugging Face name is known for attnkit parameter {name!r}")


def hf_names_of(rules: list[Rename], name: str) -> list[str]:
    """The Hugging Face key(s) that hold attnkit parameter ``name``."""
    rule, groups, _ = _find(rules, name)
    return [h.format(**groups) for h in rule.hf_names]


def lora_to_hf(rules: list[Rename], name: str, A: torch.Tensor, B: torch.Tensor) -> tuple[list[tuple], bool]:
    """A low-rank update ``B A`` of attnkit weight ``name`` as updates of the Hugging Face weights
    that hold it: ``([(hf name, A, B part)], transposed)``: the rows of ``B`` split and regrouped
    as :func:`to_hf` splits and regroups the weight's (``A`` shared by the parts), and whether
    Hugging Face stores those weights transposed. A weight that is part of a fused Hugging Face
    tensor, or stacked, has no such form: :class:`CheckpointError`."""
    rule, groups, _ = _find(rules, name)
    if len(rule.native_names) > 1 or rule.stacked or rule.squeeze:
        raise CheckpointError(f"a low-rank update of {name} has no low-rank form in Hugging Face's layout "
                              f"({rule.hf_names[0].format(**groups)} holds it with other tensors)")
    parts = (B,) if len(rule.hf_names) == 1 else rule._split(B)
    return [(h.format(**groups), A, rule._regroup(b, to_hf=True)) for h, b in zip(rule.hf_names, parts)], rule.transpose


def weight_and_bias(native: str, hf: str | tuple[str, ...]) -> list[Rename]:
    """The rules for ``.weight`` and ``.bias`` of one linear, norm or convolution layer (``hf`` a
    tuple: the attnkit layer fuses those Hugging Face layers)."""
    if isinstance(hf, tuple):
        return [Rename(f"{native}.{p}", tuple(f"{h}.{p}" for h in hf)) for p in ("weight", "bias")]
    return [Rename(f"{native}.{p}", f"{hf}.{p}") for p in ("weight", "bias")]


def with_prefix(rules: list[Rename], prefix: str, native: bool = True) -> list[Rename]:
    """``rules`` of a base model nested under ``prefix`` on both sides (``bert.``, ``vit.``) in a
    head model; with ``native=False`` on the Hugging Face side alone (``language_model.``: the
    text model inside a multimodal checkpoint)."""
    def prefixed(names):
        return tuple(prefix + n for n in names) if isinstance(names, tuple) else prefix + names

    return [Rename(prefixed(r.native) if native else r.native, prefixed(r.hf), r.transpose, r.sizes, r.interleaved,
                   r.stacked, r.pairs, r.squeeze) for r in rules]


def text_config(hf: dict) -> dict:
    """The ``text_config`` of a multimodal HF config (Llama 4's, Gemma 3's), checked."""
    text = hf.get("text_config")
    if not isinstance(text, dict):
        raise ConfigError(f"config.json: a {hf.get('model_type')} config needs a text_config object, got {text!r}")
    return text


def pooler_option(keys) -> dict:
    """The constructor option of a bare encoder (BERT, ViT) whose checkpoint ``keys`` hold no
    pooler (Hugging Face's ``add_pooling_layer=False``): ``{"add_pooler": False}``, else ``{}``."""
    return {} if any(k.endswith(("pooler.dense.weight", "pooler.weight")) for k in keys) else {"add_pooler": False}


def to_hf(rules: list[Rename], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """attnkit state dict -> Hugging Face state dict (fused tensors split into the rule's
    ``sizes``, or equal parts)."""
    out, pending = {}, {}
    for name, tensor in state.items():
        rule, groups, j = _find(rules, name)
        if len(rule.native_names) > 1:  # one part of a tensor HF stores fused: joined once all parts are in
            hf_name = rule.hf_names[0].format(**groups)
            parts = pending.setdefault(hf_name, {})
            parts[j] = tensor
            if len(parts) == len(rule.native_names):
                joined = torch.cat([parts[k] for k in range(len(parts))], dim=0)
                out[hf_name] = (rule._stack(joined) if rule.stacked else rule._flip(joined)).contiguous()
            continue
        parts = (tensor,) if len(rule.hf_names) == 1 else rule._split(tensor)
        for hf_name, part in zip(rule.hf_names, parts):
            part = rule._flip(rule._regroup(part, to_hf=True))
            out[hf_name.format(**groups)] = (part.unsqueeze(0) if rule.squeeze else part).contiguous()
    missing = sorted(name for name, parts in pending.items() if name not in out)
    if missing:
        raise CheckpointError(f"cannot write {missing}: some of the attnkit tensors fused into them are missing")
    return out


def from_hf(
    rules: list[Rename], state: dict[str, torch.Tensor], ignore: tuple[str, ...] = ()
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Hugging Face state dict -> ``(attnkit state, attnkit name -> HF name(s), unmatched HF keys)``.

    HF keys that match no rule but a regex in ``ignore`` (buffers such as GPT-2's causal
    ``attn.bias``, heads attnkit drops) are dropped. A fused tensor appears only when all its
    parts are present.
    """
    parts: dict[str, dict[int, tuple[str, torch.Tensor]]] = {}
    rule_of: dict[str, Rename] = {}
    split, split_origin = {}, {}  # attnkit tensors cut from one HF tensor, and that tensor's key
    unmatched = []
    for key, tensor in state.items():
        for rule in rules:
            hit = next(((j, m) for j, rx in enumerate(rule._hf_res) if (m := rx.fullmatch(key))), None)
            if hit is not None:
                j, m = hit
                if len(rule.native_names) > 1:  # one HF tensor holds several attnkit ones
                    if rule.stacked and (tensor.dim() not in (2, 3) or tensor.shape[0] != rule.stacked):
                        raise CheckpointError(f"{key} of shape {tuple(tensor.shape)} is not {rule.stacked} stacked "
                                              "blocks")
                    flat = rule._unstack(tensor) if rule.stacked else rule._flip(tensor)
                    rows = flat.shape[0]
                    if (sum(rule.sizes) != rows) if rule.sizes else rows % len(rule.native_names):
                        parts = f"parts of {list(rule.sizes)} rows" if rule.sizes else f"{len(rule.native_names)} equal parts"
                        raise CheckpointError(f"{key} of shape {tuple(tensor.shape)} does not split into {parts} "
                                              "along its first dimension")
                    pieces = rule._split(flat)
                    for native_name, piece in zip(rule.native_names, pieces):
                        name = native_name.format(**m.groupdict())
                        split[name], split_origin[name] = piece, key
                    break
                name = rule.native_names[0].format(**m.groupdict())
                parts.setdefault(name, {})[j] = (key, tensor)
                rule_of[name] = rule
                break
        else:
            if not any(re.search(pattern, key) for pattern in ignore):
                unmatched.append(key)
    native, origin = {}, {}
    for name, got in parts.items():
        rule = rule_of[name]
        if len(got) == len(rule.hf_names):
            tensors = [rule._flip(got[j][1]) for j in range(len(got))]
            if len({t.shape[1:] for t in tensors}) > 1 or len({t.dtype for t in tensors}) > 1:
                shapes = {got[j][0]: tuple(got[j][1].shape) for j in range(len(got))}
                raise CheckpointError(f"cannot fuse tensors of different shapes or dtypes into {name}: {shapes}")
            native[name] = torch.cat(tensors, dim=0) if len(tensors) > 1 else rule._regroup(tensors[0], to_hf=False)
            if rule.squeeze:
                if native[name].shape[0] != 1:
                    raise CheckpointError(f"{got[0][0]} of shape {tuple(tensors[0].shape)} should have a first "
                                          "dimension of 1")
                native[name] = native[name].squeeze(0)
        origin[name] = " + ".join(got[j][0] for j in sorted(got))
    native.update(split)
    origin.update(split_origin)
    return native, origin, unmatched


def hf_getter(hf: dict):
    """``get(key, default)`` for a HF config dict: ``hf[key]``, or ``default`` when the key is
    absent or null (configs write null for a field left unset)."""
    return lambda key, default: default if hf.get(key) is None else hf[key]


def first_token_id(hf: dict, name: str, default: int | None) -> int | None:
    """A token-id field of an HF config that may be a list (``eos_token_id``: a chat model's ends
    of turn): its first id, the one a decoder's config keeps (the generation config has them all)."""
    value = hf.get(name, default)
    return value[0] if isinstance(value, list) and value else value


def require_hf_settings(hf: dict, supported: dict, model_name: str) -> None:
    """Refuse HF config fields whose value attnkit's model does not implement.

    ``supported`` maps field -> the only value attnkit supports (also HF's default, used
    when the field is absent).
    """
    for name, value in supported.items():
        if hf.get(name, value) != value:
            raise ConfigError(f"config.json: {name}={hf[name]!r} is not supported by attnkit's {model_name} (needs {value!r})")


def single_token_id(hf: dict, name: str, default: int | None, model_name: str) -> int | None:
    """A token-id field of an HF config that HF also allows as a list (``eos_token_id``): the
    one id (or None) attnkit's ``model_name`` takes; a list of several is a ConfigError."""
    value = hf.get(name, default)
    if isinstance(value, list):
        if len(value) != 1:
            raise ConfigError(f"config.json: {name} {value} must be a single id for attnkit's {model_name}")
        value = value[0]
    return value
