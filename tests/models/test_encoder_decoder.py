"""What every encoder-decoder model shares (``EncoderDecoderModel``), checked on each of them."""

import pytest

from tests.models import test_t5, test_transformer


@pytest.mark.parametrize("family", [test_transformer, test_t5], ids=["Transformer", "T5"])
def test_encoder_runs_once_and_cross_attention_keys_are_computed_once(family):
    model = family.tiny()
    src, mask = family.padded_batch()
    calls = {"encoder": [], "cross_keys": 0}
    model.encoder.register_forward_hook(lambda mod, args, out: calls["encoder"].append(args[0].shape[0]))

    def count(*_):
        calls["cross_keys"] += 1

    cross = model.decoder.layers[0].cross_attn
    (cross.kv_proj if cross.fused_qkv else cross.k_proj).register_forward_hook(count)
    out = model.generate(src, attention_mask=mask, num_beams=4, max_new_tokens=6, eos_token_id=None)
    assert out.shape == (3, 7)
    assert calls == {"encoder": [3], "cross_keys": 1}  # once, on the un-expanded batch
