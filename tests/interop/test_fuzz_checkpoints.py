"""Fuzz: hundreds of malformed checkpoint directories made from one valid tiny checkpoint.

Every structurally invalid one (truncated, edited header, wrong shape or dtype, missing file,
bad config.json) must be rejected with an attnkit error; none may crash the process or hang.
Some mutations cannot be detected by any loader (a flipped byte inside tensor data is just
different weights), so for random flips the rule is weaker: loading raises an AttnkitError
or returns a model, never anything else.
"""

import json
import random
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file as _load_mmapped
from safetensors.torch import save_file

import attnkit
from attnkit import GPT, GPTConfig
from attnkit.errors import AttnkitError


def load_file(path):
    """Tensors copied out of the file, so that it can be overwritten (safetensors maps it)."""
    return {k: v.clone() for k, v in _load_mmapped(path).items()}

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def split_safetensors(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join_safetensors(header: dict, body: bytes, pad: bool = True) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def header_edit(fn):
    """A mutation that edits the parsed safetensors header (tensor data unchanged)."""
    def mutate(d):
        header, body = split_safetensors((d / WEIGHTS).read_bytes())
        fn(header)
        (d / WEIGHTS).write_bytes(join_safetensors(header, body))
    return mutate


def first_tensor(header):
    return next(k for k in header if k != "__metadata__")


def set_field(field, value, name=None):
    def fn(h):
        h[name or first_tensor(h)][field] = value
    return fn


def state_edit(fn):
    """A mutation that writes a *valid* safetensors file with different tensors."""
    def mutate(d):
        state = load_file(d / WEIGHTS)
        fn(state)
        save_file(state, d / WEIGHTS, metadata={"format": "pt"})
    return mutate


def config_edit(fn, keep_block=True):
    def mutate(d):
        cfg = json.loads((d / CONFIG).read_text())
        if not keep_block:
            del cfg["attnkit"]
        fn(cfg)
        (d / CONFIG).write_text(json.dumps(cfg))
    return mutate


def write(name, content: bytes):
    def mutate(d):
        (d / name).write_bytes(content)
    return mutate


def remove(name):
    def mutate(d):
        path = d / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return mutate


def truncate(name, keep):
    def mutate(d):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[:keep(len(data))])
    return mutate


def flip(name, pos):
    def mutate(d):
        data = bytearray((d / name).read_bytes())
        data[pos(len(data)) % len(data)] ^= 0xFF
        (d / name).write_bytes(bytes(data))
    return mutate


def structural_cases(weights_size: int, header_len: int, rng: random.Random):
    """``(id, mutation)`` pairs that every correct loader must reject."""
    cases = []
    # Truncations anywhere: the tensors must tile the file exactly, so any cut is detectable.
    cuts = sorted({0, 1, 7, 8, 9, 8 + header_len - 1, 8 + header_len, 8 + header_len + 1, weights_size - 1,
                   *rng.sample(range(1, weights_size), 60)})
    cases += [(f"truncate-weights-{k}", truncate(WEIGHTS, lambda n, k=k: k)) for k in cuts]
    # Bytes appended after the data.
    cases += [(f"trailing-{k}", lambda d, k=k: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes() + b"\0" * k))
              for k in (1, 4, 1000)]
    # The 8-byte header length: flipping any byte makes it disagree with the file.
    cases += [(f"flip-length-byte-{i}", flip(WEIGHTS, lambda n, i=i: i)) for i in range(8)]
    for value in (0, 1, header_len - 1, header_len + 1, 2**31, 2**62, 2**64 - 1):
        cases.append((f"header-length-{value}", lambda d, v=value: (d / WEIGHTS).write_bytes(
            struct.pack("<Q", v) + (d / WEIGHTS).read_bytes()[8:])))
    # Edited headers.
    bad_values = {
        "dtype": ["F33", "", None, 7, ["F32"], "f32", "I64", "F16", "BF16", "BOOL", "U8"],
        "shape": [[], [1], [-1, 32], [32.0, 256], "256,32", None, [2**40, 2**40], [256, 33], [32, 256, 1], [True, 32]],
        "data_offsets": [[0], [0, 1, 2], [-8, 100], [10, 5], ["0", "4"], None, [0, 2**60], [1, 32769], [3, 32771]],
    }
    for field, values in bad_values.items():
        cases += [(f"header-{field}-{v!r}", header_edit(set_field(field, v))) for v in values]
    cases += [
        ("header-extra-field", header_edit(lambda h: h[first_tensor(h)].update(extra=1))),
        ("header-missing-dtype", header_edit(lambda h: h[first_tensor(h)].pop("dtype"))),
        ("header-entry-not-object", header_edit(lambda h: h.update({first_tensor(h): [1, 2, 3]}))),
        ("header-metadata-not-strings", header_edit(lambda h: h.update(__metadata__={"format": 1}))),
        ("header-metadata-list", header_edit(lambda h: h.update(__metadata__=["pt"]))),
        ("header-drop-tensor", header_edit(lambda h: h.pop(first_tensor(h)))),
        ("header-rename-tensor", header_edit(lambda h: h.update(renamed=h.pop(first_tensor(h))))),
        ("header-duplicate-offsets", header_edit(lambda h: h.update(copy=dict(h[first_tensor(h)])))),
        ("header-empty", write(WEIGHTS, join_safetensors({}, b""))),
        ("header-not-object", lambda d: (d / WEIGHTS).write_bytes(join_safetensors([], b"")[:8] + b"[]      ")),
        ("header-not-utf8", lambda d: (d / WEIGHTS).write_bytes(struct.pack("<Q", 8) + b"\xff\xfe{}    ")),
        ("header-deep-nesting", lambda d: (d / WEIGHTS).write_bytes(struct.pack("<Q", 200000) + b"[" * 200000)),
        ("weights-empty-file", write(WEIGHTS, b"")),
        ("weights-random-bytes", write(WEIGHTS, bytes(rng.getrandbits(8) for _ in range(4096)))),
        ("weights-is-pickle", lambda d: torch.save(load_file(d / WEIGHTS), d / WEIGHTS)),
    ]
    # Valid safetensors files whose tensors do not fit the model.
    cases += [
        ("state-wrong-shape-wte", state_edit(lambda s: s.update({"transformer.wte.weight": torch.zeros(255, 32)}))),
        ("state-wrong-shape-qkv", state_edit(lambda s: s.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(96, 32)}))),
        ("state-wrong-rank", state_edit(lambda s: s.update({"transformer.ln_f.weight": torch.zeros(32, 1)}))),
        ("state-scalar", state_edit(lambda s: s.update({"transformer.ln_f.bias": torch.tensor(0.0)}))),
        ("state-int-dtype", state_edit(lambda s: s.update({"transformer.wpe.weight": torch.zeros(64, 32, dtype=torch.int64)}))),
        ("state-bool-dtype", state_edit(lambda s: s.update({"transformer.ln_f.bias": torch.zeros(32, dtype=torch.bool)}))),
        ("state-missing-key", state_edit(lambda s: s.pop("transformer.h.0.mlp.c_fc.bias"))),
        ("state-extra-key", state_edit(lambda s: s.update(stowaway=torch.zeros(1)))),
        ("state-extra-layer", state_edit(lambda s: s.update({"transformer.h.1.ln_1.weight": torch.ones(32)}))),
        ("state-empty", state_edit(lambda s: s.clear())),
        ("state-untied-head", state_edit(lambda s: s.update({"lm_head.weight": torch.ones(256, 32)}))),
    ]
    # Missing or misplaced files.
    cases += [
        ("missing-config", remove(CONFIG)),
        ("missing-weights", remove(WEIGHTS)),
        ("config-is-directory", lambda d: ((d / CONFIG).unlink(), (d / CONFIG).mkdir())),
        ("weights-is-directory", lambda d: ((d / WEIGHTS).unlink(), (d / WEIGHTS).mkdir())),
        ("only-pickle", lambda d: (torch.save(load_file(d / WEIGHTS), d / "pytorch_model.bin"), (d / WEIGHTS).unlink())),
        ("index-missing-shard", lambda d: ((d / WEIGHTS).rename(d / "gone.safetensors"), (d / "gone.safetensors").unlink(),
                                           (d / "model.safetensors.index.json").write_text(
                                               json.dumps({"weight_map": {"transformer.wte.weight": "shard.safetensors"}})))),
        ("index-traversal", lambda d: ((d / WEIGHTS).rename(d.parent / "x.safetensors"),
                                       (d / "model.safetensors.index.json").write_text(
                                           json.dumps({"weight_map": {"transformer.wte.weight": "../x.safetensors"}})))),
        ("index-not-json", lambda d: ((d / WEIGHTS).unlink(), (d / "model.safetensors.index.json").write_text("{"))),
        ("index-no-weight-map", lambda d: ((d / WEIGHTS).unlink(), (d / "model.safetensors.index.json").write_text("{}"))),
        ("index-incomplete", lambda d: ((d / WEIGHTS).rename(d / "s1.safetensors"), (d / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"transformer.wte.weight": "s1.safetensors"}})))),
    ]
    # Bad config.json: not JSON, wrong types, unknown families, absurd sizes.
    config_text = ["", "{", "null", "[]", "42", '"gpt2"', "{'a': 1}", "\xff\xfe", "[" * 100000, '{"model_type": "gpt2",}',
                   '{"model_type": "gpt2", "n_embd": ' + "9" * 5000 + "}", '{"model_type": "gpt2", "n_embd": NaN}',
                   '{"model_type": "gpt2", "n_embd": 1e999}']
    cases += [(f"config-text-{i}", write(CONFIG, t.encode("latin-1"))) for i, t in enumerate(config_text)]
    cases += [(f"config-truncated-{k}", truncate(CONFIG, lambda n, k=k: int(n * k / 10))) for k in range(1, 10)]
    hf_fields = {"model_type": ["llama", None, 3, ["gpt2"]], "n_embd": ["32", 33, -32, 0, None, 1e3, True],
                 "n_layer": [2, 0, -1, "1", 10**12], "n_head": [3, 0, "4"], "vocab_size": [255, 10**12, None, "256"],
                 "n_positions": [63, 0, 2**40], "activation_function": ["mish", 1, None, ["gelu"]],
                 "layer_norm_epsilon": [-1.0, "small", 0], "tie_word_embeddings": ["yes", 1, None],
                 "architectures": ["GPT2LMHeadModel", ["LlamaForCausalLM"], 7, {"a": 1}],
                 "bos_token_id": ["x", 1.5], "scale_attn_by_inverse_layer_idx": [True],
                 "add_cross_attention": [True], "n_inner": [100, -5, "x"]}
    for field, values in hf_fields.items():
        cases += [(f"hf-config-{field}-{v!r}", config_edit(lambda c, f=field, v=value: c.update({f: v}), keep_block=False))
                  for value in values for v in [value]]
    block_edits = {
        "block-not-object": lambda c: c.update(attnkit=[1]),
        "block-architecture-unknown": lambda c: c["attnkit"].update(architecture="Llama"),
        "block-architecture-int": lambda c: c["attnkit"].update(architecture=3),
        "block-weights-unknown": lambda c: c["attnkit"].update(weights="pickle"),
        "block-weights-native": lambda c: c["attnkit"].update(weights="attnkit"),
        "block-config-list": lambda c: c["attnkit"].update(config=[]),
        "block-config-unknown-field": lambda c: c["attnkit"]["config"].update(flux_capacitor=1),
        "block-config-wrong-model-type": lambda c: c["attnkit"]["config"].update(model_type="bert"),
        "block-config-d-model-str": lambda c: c["attnkit"]["config"].update(d_model="32"),
        "block-config-layers-huge": lambda c: c["attnkit"]["config"].update(n_layers=10**9),
        "block-config-positional": lambda c: c["attnkit"]["config"].update(positional="rotary"),
        "block-config-norm": lambda c: c["attnkit"]["config"].update(norm="rmsnorm"),
        "block-config-heads": lambda c: c["attnkit"]["config"].update(n_heads=5),
        "block-config-nobias": lambda c: c["attnkit"]["config"].update(bias=False),
    }
    cases += [(name, config_edit(fn)) for name, fn in block_edits.items()]
    return cases


def flip_cases(weights_size: int, header_len: int, rng: random.Random):
    """Random single-byte flips in the header or data: detected, or harmless, never a crash."""
    header_positions = rng.sample(range(8, 8 + header_len), 40)
    data_positions = rng.sample(range(8 + header_len, weights_size), 20)
    return [(f"flip-{p}", flip(WEIGHTS, lambda n, p=p: p)) for p in header_positions + data_positions]


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz") / "valid"
    GPT(GPTConfig.from_preset("gpt-tiny", n_layers=1)).save_pretrained(d)
    return d


def outcome(valid, workdir, name, mutate):
    d = workdir / name.replace("/", "_")[:80]
    shutil.copytree(valid, d)
    try:
        mutate(d)
        return attnkit.from_pretrained(d)
    except AttnkitError as e:
        return e
    except Exception as e:  # anything else is a bug in attnkit
        return f"{type(e).__name__}: {e}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir()


@pytest.mark.timeout(300)
def test_every_structurally_invalid_checkpoint_is_rejected(valid_checkpoint, tmp_path):
    assert isinstance(attnkit.from_pretrained(valid_checkpoint), GPT)
    data = (valid_checkpoint / WEIGHTS).read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    cases = structural_cases(len(data), header_len, random.Random(0))
    assert len(cases) >= 200 and len({name for name, _ in cases}) == len(cases)
    wrong = {}
    for name, mutate in cases:
        result = outcome(valid_checkpoint, tmp_path / "work", name, mutate)
        if not isinstance(result, AttnkitError):
            wrong[name] = result if isinstance(result, str) else f"loaded a {type(result).__name__}"
    assert not wrong, wrong


@pytest.mark.timeout(120)
def test_random_byte_flips_are_rejected_or_harmless(valid_checkpoint, tmp_path):
    data = (valid_checkpoint / WEIGHTS).read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    rejected = 0
    for name, mutate in flip_cases(len(data), header_len, random.Random(1)):
        result = outcome(valid_checkpoint, tmp_path / "work", name, mutate)
        assert isinstance(result, (AttnkitError, GPT)), (name, result)
        rejected += isinstance(result, AttnkitError)
        if name.startswith("flip-") and int(name[5:]) >= 8 + header_len:
            assert isinstance(result, GPT), f"{name}: a flip inside tensor data is only different weights"
    assert rejected >= 20  # most header flips break the JSON, a name, a dtype or an offset
