"""Loading checkpoints from strangers: no pickle by default, nothing executed, and clear
errors that name the file, the key and the shapes."""

import json
import os
import re
import struct

import pytest
import torch
from safetensors.torch import load_file as _load_mmapped
from safetensors.torch import save_file

import attnkit
from attnkit import GPT, GPTConfig
from attnkit.errors import AttnkitError, CheckpointError, ConfigError


def load_file(path):
    """Tensors copied out of the file, so that it can be overwritten (safetensors maps it)."""
    return {k: v.clone() for k, v in _load_mmapped(path).items()}


@pytest.fixture
def ckpt(tmp_path):
    """A valid tiny GPT-2 checkpoint directory in Hugging Face's layout."""
    d = tmp_path / "ck"
    GPT(GPTConfig.from_preset("gpt-tiny", n_layers=1)).save_pretrained(d)
    return d


def edit_config(d, fn):
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


def drop_attnkit_block(cfg):
    del cfg["attnkit"]


def edit_weights(d, fn):
    state = load_file(d / "model.safetensors")
    fn(state)
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})


def test_valid_checkpoint_loads(ckpt):
    assert isinstance(attnkit.from_pretrained(ckpt), GPT)


def test_pickle_checkpoint_is_refused_with_conversion_advice(ckpt):
    state = load_file(ckpt / "model.safetensors")
    os.remove(ckpt / "model.safetensors")
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors only") as e:
        attnkit.from_pretrained(ckpt)
    assert "save_file" in str(e.value) and "allow_pickle=True" in str(e.value)
    model = attnkit.from_pretrained(ckpt, allow_pickle=True)  # explicit opt-in: weights_only load
    assert torch.equal(model.wte.weight, state["transformer.wte.weight"])


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_not_executed_even_with_opt_in(ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.remove(ckpt / "model.safetensors")
    torch.save({"x": _Payload()}, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only"):
        attnkit.from_pretrained(ckpt, allow_pickle=True)
    assert not (tmp_path / "PWNED").exists()


def test_missing_key_is_named_with_its_hugging_face_name(ckpt):
    edit_weights(ckpt, lambda s: s.pop("transformer.h.0.ln_2.bias"))
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(ckpt))}: .*missing keys \['transformer\.h\.0\.ln_2\.bias"):
        attnkit.from_pretrained(ckpt)


def test_unexpected_key_is_named(ckpt):
    edit_weights(ckpt, lambda s: s.update({"transformer.h.7.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \['transformer\.h\.7\.extra\.weight'\]"):
        attnkit.from_pretrained(ckpt)


def test_shape_mismatch_names_key_and_both_shapes(ckpt):
    edit_weights(ckpt, lambda s: s.update({"transformer.wpe.weight": torch.zeros(65, 32)}))
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(ckpt))}: .*transformer\.wpe\.weight.*\(65, 32\).*\(64, 32\)"):
        attnkit.from_pretrained(ckpt)


def test_integer_tensor_for_float_parameter_is_a_dtype_mismatch(ckpt):
    edit_weights(ckpt, lambda s: s.update({"transformer.ln_f.weight": torch.ones(32, dtype=torch.int32)}))
    with pytest.raises(CheckpointError, match=r"dtype mismatch for transformer\.ln_f\.weight.*int32.*float32"):
        attnkit.from_pretrained(ckpt)


def test_half_precision_checkpoint_is_cast_to_the_model_dtype(ckpt):
    edit_weights(ckpt, lambda s: s.update({k: v.half() for k, v in s.items()}))
    model = attnkit.from_pretrained(ckpt)
    assert model.dtype == torch.float32
    assert attnkit.from_pretrained(ckpt, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_untied_lm_head_that_differs_is_refused_for_a_tied_model(ckpt):
    edit_weights(ckpt, lambda s: s.update({"lm_head.weight": torch.randn(256, 32)}))
    with pytest.raises(CheckpointError, match="untied"):
        attnkit.from_pretrained(ckpt)


def test_unsupported_model_type_lists_supported_ones(ckpt):
    edit_config(ckpt, lambda c: (drop_attnkit_block(c), c.update(model_type="mamba")))
    with pytest.raises(CheckpointError, match=r"model_type 'mamba' is not supported; supported: \[.*'bert'.*'gpt2'"):
        attnkit.from_pretrained(ckpt)


def test_truncated_weights_file_is_reported(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        attnkit.from_pretrained(ckpt)


def test_oversized_header_length_is_refused_before_parsing(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + data[8:])
    with pytest.raises(CheckpointError, match="header length"):
        attnkit.from_pretrained(ckpt)


def test_corrupt_header_json_is_reported(ckpt):
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[8] = ord("[")
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        attnkit.from_pretrained(ckpt)


def test_config_that_is_not_json_is_reported(ckpt):
    (ckpt / "config.json").write_text("{'model_type': 'gpt2'")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        attnkit.from_pretrained(ckpt)


@pytest.mark.parametrize("field,value", [("n_embd", "wide"), ("n_layer", 2.5), ("vocab_size", None),
                                         ("tie_word_embeddings", "yes")])
def test_config_field_of_wrong_type_is_a_config_error(ckpt, field, value):
    edit_config(ckpt, lambda c: (drop_attnkit_block(c), c.update({field: value})))
    with pytest.raises(ConfigError):
        attnkit.from_pretrained(ckpt)


def test_absurd_layer_count_is_refused_before_building(ckpt):
    edit_config(ckpt, lambda c: c["attnkit"]["config"].update(n_layers=10**9))
    with pytest.raises(CheckpointError, match="n_layers=1000000000"):
        attnkit.from_pretrained(ckpt)


def test_shard_outside_the_directory_is_refused(ckpt):
    os.rename(ckpt / "model.safetensors", ckpt.parent / "elsewhere.safetensors")
    keys = load_file(ckpt.parent / "elsewhere.safetensors").keys()
    index = {"metadata": {}, "weight_map": {k: "../elsewhere.safetensors" for k in keys}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="plain file names"):
        attnkit.from_pretrained(ckpt)


def test_missing_directory_file_or_weights(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        attnkit.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="is a file"):
        attnkit.from_pretrained(ckpt / "config.json")
    os.remove(ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"has no weights.*pytorch_model.bin is read.*with allow_pickle=True"):
        attnkit.from_pretrained(ckpt)
    os.remove(ckpt / "config.json")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        attnkit.from_pretrained(ckpt)


def test_hub_id_uses_snapshot_download_with_the_hub_options(ckpt, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    calls = []
    monkeypatch.setattr(hub, "snapshot_download", lambda repo_id, **kw: calls.append((repo_id, kw)) or str(ckpt))
    assert isinstance(attnkit.from_pretrained("someone/tiny-gpt"), GPT)
    attnkit.from_pretrained("someone/tiny-gpt", revision="v2", cache_dir="/tmp/c", token="t", local_files_only=True)
    attnkit.from_pretrained("someone/tiny-gpt", allow_pickle=True)
    (_, plain), (_, options), (_, pickled) = calls
    assert "*.safetensors" in plain["allow_patterns"] and "*.bin" not in plain["allow_patterns"]
    assert {k: options[k] for k in ("revision", "cache_dir", "token", "local_files_only")} == dict(
        revision="v2", cache_dir="/tmp/c", token="t", local_files_only=True)
    assert "*.bin" in pickled["allow_patterns"]  # a pickle-only repo can be loaded when pickles are allowed


def test_hub_id_that_cannot_be_downloaded_is_a_checkpoint_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not be downloaded"):
        attnkit.from_pretrained("nobody-xyz/no-such-model")


def test_every_error_is_an_attnkit_error():
    assert issubclass(CheckpointError, AttnkitError) and issubclass(ConfigError, AttnkitError)


def test_mistyped_vocab_size_is_named(ckpt):
    edit_config(ckpt, lambda c: (drop_attnkit_block(c), c.update(vocab_size=[256])))
    with pytest.raises(ConfigError, match="vocab_size must be an int"):
        attnkit.from_pretrained(ckpt)


def test_a_computed_buffer_too_large_for_memory_is_refused_before_building(tmp_path):
    """The sinusoidal table is computed from n_positions, not loaded: config.json alone sizes it."""
    from attnkit.models.transformer import Transformer, TransformerConfig

    Transformer(TransformerConfig.from_preset("transformer-tiny")).save_pretrained(tmp_path)
    edit_config(tmp_path, lambda c: c["attnkit"]["config"].update(n_positions=10**12))
    with pytest.raises(ConfigError, match=r"config.json: the model's .* GiB, more than half the free memory"):
        attnkit.from_pretrained(tmp_path)


def test_a_saved_model_directory_has_the_umask_permissions_not_private_ones(tmp_path):
    model = GPT(GPTConfig.from_preset("gpt-tiny"))
    old = os.umask(0o022)
    try:
        model.save_pretrained(tmp_path / "saved")
    finally:
        os.umask(old)
    assert (tmp_path / "saved").stat().st_mode & 0o777 == 0o755  # mkdtemp's own mode is 0700
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "saved" / name).stat().st_mode & 0o777 == 0o644, name  # safetensors writes 0600
