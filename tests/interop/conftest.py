import pytest


def _outputs(model, ids, mask, types=None):
    """An encoder's or head's named outputs for a padded batch (those the model returns)."""
    out = model(ids, attention_mask=mask) if types is None else model(ids, attention_mask=mask, token_type_ids=types)
    names = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")
    return {n: getattr(out, n) for n in names if getattr(out, n, None) is not None}


def _assert_close_on_real_tokens(got: dict, ref: dict, mask, atol: float = 1e-4):
    """Every output both sides return agrees within ``atol``; per-token outputs on real tokens only."""
    shared = set(got) & set(ref)
    assert shared
    for name in shared:
        diff = (got[name] - ref[name]).abs()
        if diff.dim() >= 2 and diff.shape[:2] == mask.shape:
            diff = diff[mask.bool()]
        assert diff.max() <= atol, name


@pytest.fixture
def outputs_of():
    """``outputs(model, ids, mask, types=None) -> {name: tensor}`` of a BERT-style model."""
    return _outputs


@pytest.fixture
def close_on_real_tokens():
    """``check(got, ref, mask)``: outputs of two BERT-style models agree (1e-4) on the real tokens."""
    return _assert_close_on_real_tokens


def _check_head_loss_and_gradients(hf, model, hf_base: str, ids, mask, labels):
    """The head's loss equals transformers' (1e-5), and so do the word embeddings' gradients (1e-4)."""
    import torch

    got = model(ids, attention_mask=mask, **labels).loss
    ref = hf(ids, attention_mask=mask, **labels).loss
    assert torch.allclose(got, ref, atol=1e-5)
    got.backward()
    ref.backward()
    ours = model.encoder_model.word_embeddings.weight.grad
    theirs = getattr(hf, hf_base).embeddings.word_embeddings.weight.grad
    assert (ours - theirs).abs().max() < 1e-4 and ours.abs().sum() > 0


@pytest.fixture
def head_loss_and_gradients_match():
    """``check(hf, model, hf_base_attribute, ids, mask, labels)``: see ``_check_head_loss_and_gradients``."""
    return _check_head_loss_and_gradients
