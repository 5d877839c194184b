"""AdamW decays matrices only: not norms, biases or embeddings (a tied output head is an embedding)."""

import pytest
import torch

from attnkit import GPT, GPTConfig
from attnkit.training.optim import decay_groups, make_optimizer


def names(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in ids}


@pytest.mark.parametrize("tied", [True, False])
def test_decay_only_on_linear_weights(tied):
    model = GPT(GPTConfig.from_preset("gpt-tiny", tie_word_embeddings=tied))
    decay, no_decay = decay_groups(model, 0.1)
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if tied:
        linear.discard("lm_head.weight")  # it is wte.weight, an embedding
    assert names(model, decay["params"]) == linear
    assert not names(model, decay["params"]) & names(model, no_decay["params"])
    everything = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    assert names(model, decay["params"]) | names(model, no_decay["params"]) == everything
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_adamw_step_with_zero_gradient_shrinks_exactly_the_decayed_weights():
    # With zero gradients Adam's update is 0, so only decoupled weight decay acts: p <- p (1 - lr wd).
    model = GPT(GPTConfig.from_preset("gpt-tiny"))
    lr, wd = 0.5, 0.1
    opt = make_optimizer(model, lr=lr, weight_decay=wd)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    decayed = names(model, opt.param_groups[0]["params"])
    for n, p in model.named_parameters():
        expected = before[n] * (1 - lr * wd) if n in decayed else before[n]
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7)
    assert "decoder.layers.0.attn.qkv_proj.weight" in decayed and "wte.weight" not in decayed


def test_fused_adamw_follows_the_reference_adamw():
    # make_optimizer picks the fused kernel on CPU for speed; it must train exactly like the
    # plain for-loop AdamW (same groups, same hyper-parameters) on real gradients.
    torch.manual_seed(0)
    fast = GPT(GPTConfig.from_preset("gpt-tiny"))
    ref = GPT(GPTConfig.from_preset("gpt-tiny"))
    ref.load_state_dict(fast.state_dict())
    opt_fast = make_optimizer(fast, lr=1e-2, weight_decay=0.1)
    opt_ref = torch.optim.AdamW(decay_groups(ref, 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    assert opt_fast.defaults["fused"] and not opt_ref.defaults["fused"]
    ids = torch.randint(0, 256, (2, 16))
    for _ in range(3):
        for model, opt in ((fast, opt_fast), (ref, opt_ref)):
            opt.zero_grad()
            model(ids, labels=ids).loss.backward()
            opt.step()
    # Updates are ~lr = 1e-2 per step; rounding differences stay a hundred times below that
    # (they are largest where a gradient is ~0, e.g. key biases, and Adam divides by ~sqrt(v)).
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-4, msg=name)
