"""GPT-2 checkpoints both ways: Hugging Face -> attnkit and attnkit -> Hugging Face give the
same logits and the same generated tokens as `transformers` with identical weights."""

import json
import warnings

import pytest
import torch

import attnkit
from attnkit import GPT, GPTConfig
from attnkit.errors import CheckpointError

transformers = pytest.importorskip("transformers")

# PAD is not 0: transformers 5.x beam search fills finished rows with EOS when pad_token_id == 0
# (`pad_token_id or eos_token_id[0]` treats the tensor 0 as missing); attnkit uses the pad id given.
V, PAD, EOS = 96, 1, 95


def hf_gpt2(**overrides):
    cfg = dict(vocab_size=V, n_positions=48, n_embd=32, n_layer=2, n_head=4, bos_token_id=EOS, eos_token_id=EOS,
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    cfg.update(overrides)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()


def padded_batch(side: str):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, V, (3, 9), generator=g)
    lengths = torch.tensor([9, 6, 3])
    pos = torch.arange(9)[None]
    mask = (pos < lengths[:, None]) if side == "right" else (pos >= 9 - lengths[:, None])
    return ids.masked_fill(~mask, PAD), mask.long()


def hf_logits(hf, ids, mask):
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # HF's own rule for padded batches
    return hf(ids, attention_mask=mask, position_ids=position_ids).logits


@pytest.mark.parametrize("side", ["right", "left"])
def test_transformers_gpt2_checkpoint_gives_same_logits(tmp_path, side):
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    assert isinstance(ours, GPT) and not ours.training
    ids, mask = padded_batch(side)
    with torch.no_grad():
        diff = (ours(ids, attention_mask=mask).logits - hf_logits(hf, ids, mask)).abs()
    assert diff[mask.bool()].max() <= 1e-4


@pytest.mark.parametrize("tied", [True, False])
def test_attnkit_gpt_saved_loads_in_transformers_with_same_logits(tmp_path, tied):
    ours = GPT(GPTConfig.from_preset("gpt-tiny", tie_word_embeddings=tied)).eval()
    ours.save_pretrained(tmp_path / "ck")
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ck", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = padded_batch("right")
    ids = ids.clamp(max=255)
    with torch.no_grad():
        diff = (ours(ids, attention_mask=mask).logits - hf_logits(hf.eval(), ids, mask)).abs()
    assert diff[mask.bool()].max() <= 1e-4
    again = attnkit.from_pretrained(tmp_path / "ck")
    assert again.config == ours.config
    for (name, a), b in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_special_token_ids_outside_the_vocabulary_are_dropped_with_a_warning(tmp_path):
    """GPT2Config(vocab_size=96) keeps bos/eos 50256: the checkpoint still loads, same logits."""
    hf = hf_gpt2(bos_token_id=50256, eos_token_id=50256)
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning) as record:
        ours = attnkit.from_pretrained(tmp_path)
    messages = " ".join(str(w.message) for w in record)
    assert "bos_token_id 50256 is outside the vocabulary" in messages and "eos_token_id 50256" in messages
    assert ours.config.bos_token_id is None and ours.config.eos_token_id is None
    ids, mask = padded_batch("right")
    with torch.no_grad():
        diff = (ours(ids, attention_mask=mask).logits - hf_logits(hf, ids, mask)).abs()
    assert diff[mask.bool()].max() <= 1e-4


def test_base_model_checkpoint_without_prefix_loads(tmp_path):
    hf = hf_gpt2()
    hf.transformer.save_pretrained(tmp_path)  # GPT2Model: keys "wte.weight", no "transformer." prefix
    ours = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch("right")
    with torch.no_grad():
        ref = hf.transformer(ids, attention_mask=mask).last_hidden_state
        diff = (ours(ids, attention_mask=mask).last_hidden_state - ref).abs()
    assert diff[mask.bool()].max() <= 1e-4


def test_sharded_checkpoint_loads(tmp_path):
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and not (tmp_path / "model.safetensors").exists()
    ours = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch("right")
    with torch.no_grad():
        diff = (ours(ids, attention_mask=mask).logits - hf_logits(hf, ids, mask)).abs()
    assert diff[mask.bool()].max() <= 1e-4


def test_attnkit_only_variant_round_trips_exactly_and_is_marked(tmp_path):
    cfg = GPTConfig.from_preset("gpt-tiny", positional="rotary", norm="rmsnorm", n_kv_heads=2, activation="swiglu",
                                bias=False)
    ours = GPT(cfg).eval()
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "attnkit" and config["attnkit"]["weights"] == "attnkit"
    again = GPT.from_pretrained(tmp_path)
    ids = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, again(ids).logits)
    with pytest.raises(Exception):  # transformers has no such model_type
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_hf_config_fields_are_converted_when_no_attnkit_block(tmp_path):
    hf = hf_gpt2(n_inner=80, activation_function="gelu", layer_norm_epsilon=1e-6, tie_word_embeddings=False)
    hf.save_pretrained(tmp_path)
    cfg = attnkit.from_pretrained(tmp_path).config
    assert (cfg.d_ff, cfg.activation, cfg.norm_eps, cfg.tie_word_embeddings, cfg.d_model) == (80, "gelu", 1e-6, False, 32)


def test_unsupported_gpt2_option_is_refused(tmp_path):
    hf_gpt2(scale_attn_by_inverse_layer_idx=True).save_pretrained(tmp_path)
    with pytest.raises(attnkit.ConfigError, match="scale_attn_by_inverse_layer_idx"):
        attnkit.from_pretrained(tmp_path)


def test_saving_over_an_existing_checkpoint_keeps_other_files(tmp_path):
    first = GPT(GPTConfig.from_preset("gpt-tiny"))
    first.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    second = GPT(GPTConfig.from_preset("gpt-tiny"))
    second.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").read_text() == "{}"
    assert torch.equal(attnkit.from_pretrained(tmp_path).wte.weight, second.wte.weight)
    assert [p.name for p in tmp_path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = GPT(GPTConfig.from_preset("gpt-tiny"))
    model.save_pretrained(tmp_path / "ck")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        GPT(GPTConfig.from_preset("gpt-tiny")).save_pretrained(tmp_path / "ck")
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_loading_into_the_wrong_class_is_an_error(tmp_path):
    GPT(GPTConfig.from_preset("gpt-tiny")).save_pretrained(tmp_path)

    class OtherModel(attnkit.Model):
        pass

    with pytest.raises(CheckpointError, match="GPT"):
        OtherModel.from_pretrained(tmp_path)


# -- generation: exactly transformers' tokens --------------------------------------------------
@pytest.fixture
def gpt2_pair(tmp_path):
    """A transformers GPT-2 without default EOS and attnkit's copy loaded from its checkpoint."""
    hf = hf_gpt2(eos_token_id=None, bos_token_id=None)
    hf.save_pretrained(tmp_path)
    return hf, attnkit.from_pretrained(tmp_path)


def _generate_both(pair, eos, num_beams, max_new_tokens=8, **kw):
    hf, ours = pair
    ids, mask = padded_batch("left")
    args = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False, eos_token_id=eos,
                pad_token_id=PAD, attention_mask=mask, **kw)
    return ours.generate(ids, **args), hf.generate(ids, **args)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generation_without_eos_matches_transformers(gpt2_pair, num_beams):
    got, ref = _generate_both(gpt2_pair, eos=None, num_beams=num_beams)
    assert torch.equal(got, ref)


@pytest.mark.parametrize("num_beams,kw", [
    (1, {}), (4, {}), (4, dict(early_stopping=True)), (4, dict(length_penalty=0.5, max_new_tokens=12)),
    (4, dict(length_penalty=-1.0)),  # favours short hypotheses: the EOS-ended ones win
])
def test_generation_with_eos_matches_transformers(gpt2_pair, num_beams, kw):
    probe, _ = _generate_both(gpt2_pair, eos=None, num_beams=num_beams, **kw)
    eos = int(probe[-1, 10])  # a token the search emits at its second step: EOS = it ends hypotheses early
    got, ref = _generate_both(gpt2_pair, eos=eos, num_beams=num_beams, **kw)
    if num_beams == 1 or kw.get("length_penalty", 1.0) < 0:
        assert (ref[:, 9:] == eos).any(), "test needs a hypothesis that ends in EOS"
    assert torch.equal(got, ref)


def test_dtype_builds_the_model_in_that_dtype_and_restores_the_default(tmp_path, monkeypatch):
    """from_pretrained(dtype=bf16) gives the weights of the fp32 load cast to bf16, builds its
    layers in bf16 (no fp32 copy of the weights while loading) and leaves torch's default
    dtype as it was, also when building fails."""
    hf_gpt2().save_pretrained(tmp_path)
    reference = attnkit.from_pretrained(tmp_path).to(torch.bfloat16)
    built_in = []
    init = torch.nn.Linear.__init__
    monkeypatch.setattr(torch.nn.Linear, "__init__",
                        lambda self, *a, **k: (init(self, *a, **k), built_in.append((self.weight.device.type, self.weight.dtype)))[0])
    model = attnkit.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {dt for device, dt in built_in if device != "meta"} == {torch.bfloat16}  # meta: the shape check
    assert torch.get_default_dtype() == torch.float32
    for (name, p), q in zip(model.state_dict().items(), reference.state_dict().values()):
        assert p.dtype == q.dtype and torch.equal(p, q), name
    gpt_init = GPT.__init__  # fails when built for real in fp16 (after the fp32 shape check on meta)
    monkeypatch.setattr(GPT, "__init__", lambda self, *a, **k: 1 / 0 if torch.get_default_dtype() == torch.float16
                        else gpt_init(self, *a, **k))
    with pytest.raises(ZeroDivisionError):
        attnkit.from_pretrained(tmp_path, dtype=torch.float16)
    assert torch.get_default_dtype() == torch.float32
    for bad in ("bf16", torch.int8):
        with pytest.raises(attnkit.InputError, match="dtype must be a floating torch.dtype"):
            attnkit.from_pretrained(tmp_path, dtype=bad)


def test_attention_dropout_is_read_and_written_as_attn_pdrop(tmp_path):
    hf_gpt2(attn_pdrop=0.3, resid_pdrop=0.2, embd_pdrop=0.2).save_pretrained(tmp_path / "hf")
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert (model.config.attn_dropout, model.config.dropout) == (0.3, 0.2)
    model.train()
    ids = torch.randint(2, V, (2, 8))
    weights = model(ids, output_attentions=True).attentions[0]
    assert not torch.allclose(weights.sum(-1), torch.ones(()))  # weights dropped out (and rescaled), as in GPT-2
    model.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["attn_pdrop"] == 0.3


def test_hidden_states_equal_transformers(tmp_path):
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    ids = torch.randint(2, V, (2, 9))
    with torch.no_grad():
        ref = hf(ids, output_hidden_states=True).hidden_states
        got = ours(ids, output_hidden_states=True).hidden_states
        with_labels = ours(ids, labels=ids, output_hidden_states=True).hidden_states
    assert len(got) == len(ref) == 3  # embeddings, layer 1, final norm of layer 2
    for a, b, c in zip(got, ref, with_labels):
        assert (a - b).abs().max() <= 1e-5 and torch.equal(a, c)
    assert ours(ids).hidden_states is None


def test_hugging_face_fields_edited_after_an_attnkit_save_win_over_its_block(tmp_path):
    """transformers keeps the attnkit block when it re-saves; fields changed there (or a resized
    vocabulary, or a corrupted block) must not be overridden by the stale block."""
    GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=V)).save_pretrained(tmp_path / "ours")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours")
    hf.config.layer_norm_epsilon, hf.config.activation_function = 1e-2, "relu"
    hf.resize_token_embeddings(V + 4)
    hf.save_pretrained(tmp_path / "edited")
    assert "attnkit" in json.loads((tmp_path / "edited" / "config.json").read_text())
    with pytest.warns(UserWarning, match="differ from the attnkit block.*using the Hugging Face fields"):
        model = attnkit.from_pretrained(tmp_path / "edited")
    assert (model.config.norm_eps, model.config.activation, model.config.vocab_size) == (1e-2, "relu", V + 4)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "edited").eval()  # built from the edited fields
    ids = torch.randint(0, V + 4, (2, 7))
    with torch.no_grad():
        assert (model(ids).logits - reloaded(ids).logits).abs().max() <= 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an untouched attnkit save loads from its block, silently
        attnkit.from_pretrained(tmp_path / "ours")
