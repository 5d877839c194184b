"""How ``from_pretrained`` builds a model: without initialising its parameters (the checkpoint
overwrites them all: the loaded model is the checkpoint's, buffers are computed, torch's random
generator is left alone, and only the loading thread skips initialisation), and in which dtype
(``dtype="auto"``: the checkpoint's, as ``transformers`` reads it)."""

import json
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

import attnkit
from attnkit import GPT, GPTConfig, Transformer, TransformerConfig
from attnkit.errors import InputError
from attnkit.interop import stored_dtype
from attnkit.models.base import NoParameterInit
from attnkit.nn.positional import sinusoidal_positions


def test_loading_does_not_draw_from_the_random_generator(tmp_path):
    GPT(GPTConfig.from_preset("gpt-tiny", n_layers=2)).save_pretrained(tmp_path)
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    model = attnkit.from_pretrained(tmp_path)
    changed = model.with_config(dropout=0.3)  # the same weights in a new model
    assert torch.equal(torch.rand(4), expected)  # random initialisation would have drawn from it
    assert all(p.requires_grad for p in model.parameters())
    assert changed.config.dropout == 0.3 and all(torch.equal(a, b) for a, b in zip(changed.parameters(), model.parameters()))


def test_every_tensor_is_the_checkpoints_and_computed_buffers_are_computed(tmp_path):
    config = TransformerConfig(vocab_size=50, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=1, n_decoder_layers=1,
                               n_positions=40, final_logits_bias=True)
    saved = Transformer(config)
    with torch.no_grad():
        for p in saved.parameters():
            p.uniform_(-3, 3)  # nothing an initialiser would produce
    saved.save_pretrained(tmp_path)
    loaded = attnkit.from_pretrained(tmp_path)
    assert saved.state_dict().keys() == loaded.state_dict().keys()
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert torch.equal(loaded.positions, sinusoidal_positions(40, 32, interleave=True))
    src, tgt = torch.randint(0, 50, (2, 7)), torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(loaded(src, decoder_input_ids=tgt).logits, saved.eval()(src, decoder_input_ids=tgt).logits, rtol=0, atol=0)


def test_only_parameters_and_only_the_entering_thread_skip_initialisation():
    torch.manual_seed(1)
    reference = nn.Linear(64, 64).weight.detach().clone()
    built = {}

    def build_elsewhere():
        torch.manual_seed(1)
        built["other thread"] = nn.Linear(64, 64).weight.detach().clone()

    with NoParameterInit():
        skipped = nn.Linear(64, 64)
        skipped.requires_grad_(False)  # not a value write: still applies
        buffer = nn.init.ones_(torch.empty(3))  # not a parameter: still written
        thread = threading.Thread(target=build_elsewhere)
        thread.start()
        thread.join()
    assert torch.equal(built["other thread"], reference)
    assert not skipped.weight.requires_grad and torch.equal(buffer, torch.ones(3))


@pytest.fixture
def bf16_checkpoint(tmp_path):
    """A GPT-2 saved by ``transformers`` in bf16 (its config.json says ``"dtype": "bfloat16"``)."""
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4))
    hf.to(torch.bfloat16).save_pretrained(tmp_path)
    return tmp_path


def test_auto_dtype_is_the_one_the_checkpoint_stores(bf16_checkpoint):
    config = json.loads((bf16_checkpoint / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    auto = attnkit.from_pretrained(bf16_checkpoint, dtype="auto")
    assert attnkit.from_pretrained(bf16_checkpoint).dtype == torch.float32  # the default: fp32
    explicit = attnkit.from_pretrained(bf16_checkpoint, dtype=torch.bfloat16)
    assert auto.dtype == torch.bfloat16
    ids = torch.randint(0, 64, (2, 9))
    assert torch.equal(auto(ids).logits, explicit(ids).logits)


def test_auto_dtype_without_a_config_field_is_the_tensors(bf16_checkpoint):
    config = json.loads((bf16_checkpoint / "config.json").read_text())
    del config["dtype"]
    (bf16_checkpoint / "config.json").write_text(json.dumps(config))
    assert attnkit.from_pretrained(bf16_checkpoint, dtype="auto").dtype == torch.bfloat16
    state = {k: v.clone() for k, v in load_file(bf16_checkpoint / "model.safetensors").items()}
    state = {k: v if k == "transformer.wte.weight" else v.half() for k, v in state.items()}  # most elements fp16
    save_file(state, bf16_checkpoint / "model.safetensors", metadata={"format": "pt"})
    assert attnkit.from_pretrained(bf16_checkpoint, dtype="auto").dtype == torch.float16


def test_stored_dtype_reads_the_config_first_then_the_tensors():
    bf16, fp32 = torch.zeros(10, dtype=torch.bfloat16), torch.zeros(4)
    assert stored_dtype({"torch_dtype": "float16"}, {"a": bf16}) == torch.float16  # the older field name
    assert stored_dtype({"dtype": "float32", "torch_dtype": "float16"}, {}) == torch.float32
    assert stored_dtype({"dtype": "auto"}, {"a": fp32, "b": bf16}) == torch.bfloat16  # not a dtype: most elements
    assert stored_dtype({}, {"ids": torch.zeros(3, dtype=torch.long)}) is None


def test_a_dtype_that_is_not_floating_or_auto_is_refused(bf16_checkpoint):
    with pytest.raises(InputError, match="or 'auto'"):
        attnkit.from_pretrained(bf16_checkpoint, dtype="bf16")
