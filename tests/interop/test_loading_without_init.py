"""``from_pretrained`` builds the model without initialising its parameters (the checkpoint
overwrites them all): the loaded model is the checkpoint's, buffers are computed, torch's random
generator is left alone, and only the loading thread skips initialisation."""

import threading

import torch
from torch import nn

import attnkit
from attnkit import GPT, GPTConfig, Transformer, TransformerConfig
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
