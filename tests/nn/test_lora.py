"""LoRA (Hu et al. 2021): the adapted layer computes x Wᵀ + b + (α/r)·x Aᵀ Bᵀ and starts equal to
the base layer; only the adapters (and the named trainable modules) train; merging gives the same
outputs from plain layers; saving keeps the base checkpoint plain (transformers reads it) with the
adapters beside it, and loading puts them back. DoRA (Liu et al. 2024) equals ``peft``'s
``use_dora`` layer in outputs and gradients, with and without adapter dropout."""

import json

import pytest
import torch

import attnkit
from attnkit import CheckpointError, InputError
from attnkit.nn import Linear, LoRALinear, add_lora, merge_lora


def tiny(seed=0):
    torch.manual_seed(seed)
    return attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny", vocab_size=64)).eval()


def randomize_adapters(model, std: float = 0.1):
    """Trained-looking adapters: B drawn (it starts at zero), DoRA's magnitudes moved off the norms."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0.0, std)
            if name.endswith("lora_magnitude"):
                p.mul_(torch.rand_like(p) + 0.5)


def test_the_adapted_layer_is_the_papers_formula_and_starts_as_the_base():
    torch.manual_seed(0)
    base = Linear(12, 7)
    x = torch.randn(3, 5, 12)
    before = base(x)
    layer = LoRALinear(base, r=4, alpha=8.0)
    assert layer.weight is base.weight and layer.bias is base.bias
    assert torch.equal(layer(x), before)  # B = 0
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)  # α/r = 2
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A", "lora_B"}


def _peft_dora(layer: LoRALinear):
    """``peft``'s DoRA layer over an ``nn.Linear`` with ``layer``'s weights."""
    peft = pytest.importorskip("peft")
    plain = torch.nn.Sequential(torch.nn.Linear(layer.in_features, layer.out_features))
    theirs = peft.get_peft_model(plain, peft.LoraConfig(r=layer.r, lora_alpha=layer.alpha, target_modules=["0"],
                                                        use_dora=True, lora_dropout=layer.lora_dropout.p))
    with torch.no_grad():
        for name, value in (("base_layer.weight", layer.weight), ("base_layer.bias", layer.bias),
                            ("lora_A.default.weight", layer.lora_A), ("lora_B.default.weight", layer.lora_B),
                            ("lora_magnitude_vector.default.weight", layer.lora_magnitude)):
            theirs.get_parameter(f"base_model.model.0.{name}").copy_(value)
    return theirs


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_dora_equals_peft_in_outputs_and_gradients(dropout):
    """The magnitude starts at each output row's norm (the layer starts as the base); with
    trained factors and magnitude, outputs and the gradients of x, A, B and m equal peft's
    (whose norm ‖W + ΔW‖ is a constant in backward), in training with dropout and in eval."""
    torch.manual_seed(0)
    base = Linear(12, 7)
    x = torch.randn(3, 5, 12)
    before = base(x)
    layer = LoRALinear(base, r=4, alpha=6.0, dropout=dropout, dora=True)
    assert torch.allclose(layer(x), before, atol=1e-6)  # B = 0, m = ‖W‖
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A", "lora_B", "lora_magnitude"}
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.5)
        layer.lora_magnitude.mul_(torch.rand(7) + 0.5)
    theirs = _peft_dora(layer)
    for mode in ("train", "eval"):
        layer.train(mode == "train"), theirs.train(mode == "train")
        outs, grads = [], []
        for module, prefix in ((layer, ""), (theirs, "base_model.model.0.")):
            xi = x.clone().requires_grad_()
            torch.manual_seed(1)  # the same dropout mask
            out = module(xi)
            out.pow(2).sum().backward()
            params = {n: p for n, p in module.named_parameters()}
            names = ("lora_A", "lora_B", "lora_magnitude") if not prefix else \
                ("lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight")
            grads.append([xi.grad] + [params[prefix + n].grad.clone() for n in names])
            outs.append(out.detach())
            module.zero_grad()
        torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
        for mine, ref in zip(*grads):
            torch.testing.assert_close(mine, ref, atol=1e-4, rtol=1e-4)
    assert (outs[0] - before).abs().max() > 1e-2


def test_only_the_adapters_and_the_trainable_modules_learn():
    model = tiny()
    ids = torch.randint(0, 64, (4, 16))
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, r=2, alpha=4, targets=("qkv_proj", "fc_out"), trainable=("decoder.norm",))
    layers = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    assert len(layers) == 2 * model.config.n_layers and all(n.endswith(("attn.qkv_proj", "ffn.fc_out")) for n in layers)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{p}" for n in layers for p in "AB"} | {"decoder.norm.weight", "decoder.norm.bias"}
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    after = model.state_dict()
    for name, value in frozen.items():  # the base weights did not move, bit for bit (the final norm did)
        assert torch.equal(after[name], value) == (not name.startswith("decoder.norm.")), name


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_merging_gives_the_same_outputs_from_plain_layers(dora):
    model = tiny()
    add_lora(model, r=4, alpha=16, targets=("qkv_proj", "fc_in", "fc_out"), dora=dora)  # fc_in: GELU fused after it
    randomize_adapters(model)
    ids = torch.randint(0, 64, (4, 16))  # rows enough for oneDNN's fused linear + GELU
    with torch.no_grad():
        adapted = model(ids).logits
        assert torch.allclose(adapted[1], model(ids[1:2]).logits[0], atol=1e-5)  # each row as if alone
        merge_lora(model)
        merged = model(ids).logits
    assert (merged - adapted).abs().max() < 1e-5 and (adapted - tiny()(ids).logits).abs().max() > 1e-2
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters()) and not hasattr(model, "lora_config")
    assert torch.equal(model.generate(ids[:1], max_new_tokens=5), model.generate(ids[:1], max_new_tokens=5,
                                                                              pack_weights=False))


def test_the_experts_of_a_mixture_take_adapters_and_merge(tmp_path):
    """A mixture's experts are linear layers: adapters go on each expert's, train there, and merge
    to the same outputs; PEFT's format, whose experts are stacked tensors, is refused by name."""
    from attnkit.interop.peft import save_peft_adapter

    torch.manual_seed(0)
    model = attnkit.Mixtral(attnkit.MixtralConfig.from_preset("mixtral-tiny")).eval()
    add_lora(model, r=2, targets=("fc_in", "fc_gate", "fc_out"))
    experts = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    assert len(experts) == 3 * model.config.n_experts * model.config.n_layers and all(".experts." in n for n in experts)
    ids = torch.randint(0, 256, (2, 12))
    model.train()
    model(ids, labels=ids).loss.backward()
    learning = [m.lora_B.grad is not None and bool(m.lora_B.grad.any()) for m in model.modules()
                if isinstance(m, LoRALinear)]
    assert sum(learning) >= len(learning) // 2  # the adapters of the experts the tokens chose
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {f"{n}.lora_{p}" for n in experts for p in "AB"}
    randomize_adapters(model)
    model.eval()
    with torch.no_grad():
        adapted = model(ids).logits
        merged = merge_lora(model)(ids).logits
    assert (merged - adapted).abs().max() < 1e-5
    add_lora(model, r=2, targets=("fc_in",))
    with pytest.raises(CheckpointError, match="experts.0.fc_in is a mixture-of-experts weight"):
        save_peft_adapter(model, tmp_path)


def test_saving_keeps_a_plain_base_checkpoint_and_loading_puts_the_adapters_back(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny()
    ids = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        base_logits = model(ids).logits
    add_lora(model, r=4, alpha=8, dropout=0.1, dora=True)
    randomize_adapters(model)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "lora_config.json").read_text())["dora"] is True
    again = attnkit.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)
    assert {n for n, p in again.named_parameters() if p.requires_grad} == \
        {n for n, p in model.named_parameters() if p.requires_grad}
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=False).eval()
    with torch.no_grad():  # transformers reads the base model, no unexpected keys
        assert (hf(ids).logits - base_logits).abs().max() < 1e-4
    merge_lora(again)
    again.save_pretrained(tmp_path)  # a plain model again: the adapter files go
    assert not (tmp_path / "lora_config.json").exists() and not (tmp_path / "lora.safetensors").exists()


def test_bad_settings_and_files_are_refused_by_name(tmp_path):
    for kwargs, match in [(dict(r=0), "rank"), (dict(alpha=-1), "alpha"), (dict(dropout=1.0), "dropout"),
                          (dict(dora="yes"), "dora must be true or false"),
                          (dict(targets=("nope",)), "name no linear layer"), (dict(trainable=("nope",)), "trainable"),
                          (dict(modules=["ln_f"]), "not linear layers"),
                          (dict(targets=("out_proj", "lm_head")), "LoRA on lm_head is not supported")]:
        with pytest.raises(InputError, match=match):
            add_lora(tiny(), **kwargs)
    model = add_lora(tiny())
    with pytest.raises(InputError, match="has LoRA adapters already"):
        add_lora(model)
    model.save_pretrained(tmp_path)
    (tmp_path / "lora_config.json").write_text(json.dumps({"r": 2}))
    with pytest.raises(CheckpointError, match="lora_config.json must hold"):
        attnkit.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "lora_config.json").read_text())
    (tmp_path / "lora_config.json").write_text(json.dumps(dict(config, r=3)))  # the tensors are rank 8
    with pytest.raises(CheckpointError, match="misshapen"):
        attnkit.from_pretrained(tmp_path)
