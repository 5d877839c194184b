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
