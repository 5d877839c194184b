"""Int8 and int4 weights (attnkit.nn.quantize_int8/int4) against the formulas. int8: each output
row's weights are round(W / s) with s = max |W| / 127, and a layer computes x @ (s · q)ᵀ + b,
through PyTorch's int8 kernel (bf16 activations) for a few rows and through the dequantized
weight otherwise. int4: each group of inputs is round((W - min) / s) in 0..15 with
s = (max - min) / 15, through PyTorch's int4 kernel."""

import pytest
import torch

from attnkit import GPT, GPTConfig
from attnkit.errors import InputError
from attnkit.nn import Int4Linear, Int8Embedding, Int8Linear, Linear, quantize_int4, quantize_int8
from attnkit.nn import quantize
from attnkit.nn.quantize import INT4_MAX_ROWS, INT8_MAX_ROWS


def reference(layer: Linear, x: torch.Tensor, bf16_input: bool) -> torch.Tensor:
    """x @ (s · q)ᵀ + b in fp64 from the float layer's weight, by the formula."""
    w = layer.weight.detach().double()
    s = w.abs().amax(dim=1) / 127
    q = torch.round(w / s[:, None]).clamp(-127, 127)
    x = x.to(torch.bfloat16) if bf16_input else x
    return x.double() @ (q * s[:, None]).T + layer.bias.detach().double()


def test_each_weight_moves_by_at_most_half_its_rows_step():
    torch.manual_seed(0)
    layer = Linear(96, 40)
    q = Int8Linear.from_linear(layer)
    step = layer.weight.detach().abs().amax(dim=1, keepdim=True) / 127
    assert q.qweight.dtype == torch.int8 and int(q.qweight.abs().max()) == 127
    assert bool(((q.weight - layer.weight.detach()).abs() <= step / 2 + 1e-7).all())


@pytest.mark.parametrize("rows", [1, 33, INT8_MAX_ROWS, INT8_MAX_ROWS + 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_layer_computes_the_formula_for_few_and_many_rows(rows, dtype, monkeypatch):
    """fp32 calls and bf16 ones of up to INT8_MAX_ROWS rows through the int8 kernel, longer bf16
    ones through the dequantized weight."""
    torch.manual_seed(0)
    layer = Linear(128, 72)
    q = Int8Linear.from_linear(layer).to(dtype)
    x = torch.randn(rows, 128)
    calls, kernel_mm = [], quantize._int8_mm
    monkeypatch.setattr(quantize, "_int8_mm", lambda *a: calls.append(a) or kernel_mm(*a))
    with torch.no_grad():
        got = q(x.to(dtype)[None])[0]  # (1, rows, in): rows are counted over the leading dims
    kernel = dtype == torch.float32 or rows <= INT8_MAX_ROWS
    assert got.dtype == dtype and got.shape == (rows, 72) and len(calls) == kernel
    ref = reference(layer, x, bf16_input=kernel or dtype == torch.bfloat16)
    # bf16 outputs and scales round at 2^-9 of a value; the fp32 dequantized path at fp32's precision
    tol = 1e-5 if dtype == torch.float32 and not kernel else 5e-3
    assert (got.double() - ref).abs().max() <= tol * ref.abs().max()


def test_widths_the_kernel_does_not_take_and_gradients_use_the_dequantized_weight():
    torch.manual_seed(0)
    layer = Linear(100, 24)  # 100: not a multiple of 32 (the kernel's block)
    q = Int8Linear.from_linear(layer)
    x = torch.randn(1, 100, requires_grad=True)
    with torch.no_grad():
        assert (q(x).double() - reference(layer, x.detach(), bf16_input=False)).abs().max() < 1e-5
    q(x).sum().backward()
    torch.testing.assert_close(x.grad, q.weight.sum(0, keepdim=True))


def test_a_quantized_gpt_decodes_what_its_dequantized_twin_computes(tmp_path):
    """Every Linear becomes int8, the tied embedding stays, the state dict shrinks; the logits of
    the prompt and of each decoding step equal a float model holding the dequantized weights."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny")).eval()
    linears = {name for name, m in model.named_modules() if isinstance(m, Linear)}
    twin = GPT(model.config.replace(tie_word_embeddings=False)).eval()  # its head gets the int8 head's weights
    twin.load_state_dict(model.state_dict())
    quantize_int8(model)
    assert {name for name, m in model.named_modules() if isinstance(m, Int8Linear)} == linears
    assert isinstance(model.wte, torch.nn.Embedding) and model.wte.weight.dtype == torch.float32
    with torch.no_grad():
        for name in linears:
            twin.get_submodule(name).weight.copy_(model.get_submodule(name).weight)
    ids = torch.randint(0, model.config.vocab_size, (2, 7))
    out = model.generate(ids, max_new_tokens=12, eos_token_id=None, return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        ref = twin(out.sequences[:, :-1]).logits[:, 6:]  # the logits after the prompt and each new token
        prompt = model(ids).logits
    got = torch.stack(out.logits, 1)
    assert (got - ref).abs().max() <= 1e-2 * ref.abs().max()  # bf16 activations in the int8 kernel
    assert (prompt - twin(ids).logits).abs().max() <= 1e-2 * ref.abs().max()
    with pytest.raises(InputError, match="cannot be saved"):
        model.save_pretrained(tmp_path / "q")
    assert not (tmp_path / "q").exists()
    with pytest.raises(InputError, match="quantized already"):
        quantize_int4(model)


def test_skip_leaves_the_named_layers_alone():
    model = GPT(GPTConfig.from_preset("gpt-tiny"))
    quantize_int8(model, skip=("lm_head",))
    assert type(model.lm_head) is Linear and model.lm_head.weight is model.wte.weight
    assert isinstance(model.decoder.layers[0].ffn.fc_in, Int8Linear)


def int4_weight(layer: Int4Linear) -> torch.Tensor:
    """The (out, in) matrix an Int4Linear multiplies by, read back through its forward (x = I)."""
    with torch.no_grad():
        y = layer(torch.eye(layer.in_features))
        return (y if layer.bias is None else y - layer.bias).T.double()


@pytest.mark.parametrize("group_size", [32, 64])
def test_int4_weights_move_by_at_most_half_a_step_of_their_group(group_size):
    """Each group's values: min + s · (0..15), s = (max - min) / 15, so a weight moves by at most
    s / 2 (plus the bf16 rounding of the group's scale and offset). 40 outputs: padded to 48 for
    the kernel, and the padding dropped."""
    torch.manual_seed(0)
    layer = Linear(128, 40)
    q = Int4Linear.from_linear(layer, group_size)
    got, w = int4_weight(q), layer.weight.detach().double()
    assert got.shape == (40, 128)
    groups = w.view(40, -1, group_size)
    step = (groups.amax(-1, keepdim=True) - groups.amin(-1, keepdim=True)) / 15
    err = (got.reshape(40, -1, group_size) - groups).abs()
    slack = 2 ** -8 * groups.abs().amax(-1, keepdim=True)  # bf16: the scale and the offset round at 2^-9
    assert bool((err <= step / 2 + slack).all())
    assert bool((err > step / 4).any())  # it is 4-bit: most weights do move
    assert max(len(torch.unique(g)) for g in got.reshape(-1, group_size)) <= 16  # 16 levels per group


@pytest.mark.parametrize("readable", [True, False])
@pytest.mark.parametrize("rows", [1, 5, 33, INT4_MAX_ROWS // 2 + 1])
def test_an_int4_layer_computes_x_times_its_weight(rows, readable, monkeypatch):
    """Up to INT4_MAX_ROWS rows a call through the int4 kernel, more through the weight
    dequantized out of the kernel's layout (when that layout reads back as what was packed:
    ``readable``), both x @ Wᵀ + b for the W the kernel reads."""
    torch.manual_seed(0)
    layer = Linear(64, 48)
    q = Int4Linear.from_linear(layer, 32)
    assert q.readable  # this PyTorch's layout: the values packed read back
    q.readable = readable
    x = torch.randn(2, rows, 64)
    calls, kernel_mm = [], quantize._int4_mm
    monkeypatch.setattr(quantize, "_int4_mm", lambda *a: calls.append(a[0].shape[0]) or kernel_mm(*a))
    with torch.no_grad():
        got = q(x)
    assert calls == ([2 * rows] if 2 * rows <= INT4_MAX_ROWS or not readable else [])
    ref = x.to(torch.bfloat16).double() @ int4_weight(q).T + layer.bias.detach().double()
    assert got.dtype == torch.float32 and got.shape == (2, rows, 48)
    assert (got.double() - ref).abs().max() <= 5e-3 * ref.abs().max()
    assert torch.equal(q.weight.double(), int4_weight(q))
    q(x.requires_grad_()).square().sum().backward()  # d/dx Σ y² = 2 y W
    ref_grad = 2 * got.double() @ int4_weight(q)
    assert (x.grad.double() - ref_grad).abs().max() <= 1e-2 * ref_grad.abs().max()


def test_quantize_int4_keeps_layers_it_cannot_group_and_a_gpt_decodes_with_it():
    """gpt-tiny's 32-wide layers take groups of 32 but not 64 (left as they are); with groups of
    32 the decoding steps' logits and the loss equal a float twin's holding the weights the kernel
    reads."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny")).eval()
    quantize_int4(model, group_size=64, skip=("lm_head",))
    assert {type(m.ffn.fc_in) for m in model.decoder.layers} == {Linear}  # 32 inputs: no
    assert {type(m.ffn.fc_out) for m in model.decoder.layers} == {Int4Linear}  # 128 inputs: yes
    model = GPT(GPTConfig.from_preset("gpt-tiny")).eval()
    twin = GPT(model.config.replace(tie_word_embeddings=False)).eval()
    twin.load_state_dict(model.state_dict())
    quantize_int4(model)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, Int4Linear):
                twin.get_submodule(name).weight.copy_(int4_weight(m))
    ids = torch.randint(0, model.config.vocab_size, (2, 7))
    out = model.generate(ids, max_new_tokens=12, eos_token_id=None, return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        ref = twin(out.sequences[:, :-1]).logits[:, 6:]
    assert (torch.stack(out.logits, 1) - ref).abs().max() <= 1e-2 * ref.abs().max()
    # outside no_grad (gradients reach the activations), and the loss, which reads the head's weight
    loss, ref_loss = model(ids, labels=ids).loss, twin(ids, labels=ids).loss
    loss.backward()
    assert abs(loss.item() - ref_loss.item()) < 1e-2 * ref_loss.item() and model.wte.weight.grad is not None
    with pytest.raises(InputError, match="group_size must be one of"):
        quantize_int4(GPT(model.config), group_size=48)


def test_an_int4_layout_that_does_not_read_back_keeps_every_call_on_the_kernel(monkeypatch):
    """Another PyTorch could lay the packed values out otherwise: a layer whose values do not read
    back as packed is not ``readable``, and its long prompts and weight go through the kernel."""
    read = Int4Linear._values
    monkeypatch.setattr(Int4Linear, "_values", lambda self: read(self).flip(1))
    q = Int4Linear.from_linear(Linear(64, 48), 32)
    assert not q.readable
    monkeypatch.setattr(Int4Linear, "_values", read)
    assert Int4Linear.from_linear(Linear(64, 48), 32).readable


def test_token_embeddings_become_int8_rows_and_position_tables_stay():
    """A token embedding of at least EMBEDDING_MIN_SIZE entries: each row round(row / s) with
    s = max |row| / 127, looked up dequantized; the logits equal a float twin's holding the
    dequantized table (and the LM head, tied to it, its own int8 copy)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=40000)).eval()  # 40000 x 32 entries
    assert model.wte.weight.numel() >= quantize.EMBEDDING_MIN_SIZE > model.wpe.weight.numel()
    table = model.wte.weight.detach().clone()
    twin = GPT(model.config.replace(tie_word_embeddings=False)).eval()
    twin.load_state_dict(model.state_dict())
    quantize_int8(model)
    assert isinstance(model.wte, Int8Embedding) and type(model.wpe) is torch.nn.Embedding
    step = table.abs().amax(dim=1, keepdim=True) / 127
    assert bool(((model.wte.weight - table).abs() <= step / 2 + 1e-7).all())
    ids = torch.randint(0, 40000, (2, 9))
    with torch.no_grad():
        assert torch.equal(model.wte(ids), model.wte.weight[ids])
        twin.wte.weight.copy_(model.wte.weight)
        for name, m in model.named_modules():
            if isinstance(m, Int8Linear):
                twin.get_submodule(name).weight.copy_(m.weight)
        got, ref = model(ids).logits, twin(ids).logits
    assert (got - ref).abs().max() <= 1e-2 * ref.abs().max()
    kept = quantize_int4(GPT(model.config).eval(), embeddings=False)
    assert type(kept.wte) is torch.nn.Embedding and isinstance(kept.lm_head, Int4Linear)


@pytest.fixture(scope="module")
def tied_checkpoint(tmp_path_factory):
    """A GPT with a tied token embedding large enough to become int8 rows, saved."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tied")
    GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=40000, n_layers=2)).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_from_pretrained_quantizes_as_it_loads_what_quantizing_after_loading_gives(tied_checkpoint, kind, monkeypatch):
    """``from_pretrained(quantize=)``: the same buffers and logits as loading, then quantizing; and
    each float layer is freed once quantized (only a tied embedding waits for its second user)."""
    import weakref

    import attnkit
    from attnkit.interop import QUANTIZERS

    after = QUANTIZERS[kind](attnkit.from_pretrained(tied_checkpoint, dtype=torch.bfloat16))
    filled, alive_at_fill = [], []

    def tracking(model, fill):
        def fill_and_track(name, layer):
            alive_at_fill.append([n for n, ref in filled if ref() is not None and n != "lm_head"])
            fill(name, layer)
            filled.append((name, weakref.ref(layer.weight)))
        return quantizer(model, fill=fill_and_track)

    quantizer = QUANTIZERS[kind]
    monkeypatch.setitem(QUANTIZERS, kind, tracking)
    during = attnkit.from_pretrained(tied_checkpoint, dtype=torch.bfloat16, quantize=kind)
    assert len(filled) == 2 * 4 + 2  # 4 linears a layer, the head and the embedding
    assert all(alive == [] for alive in alive_at_fill)
    assert during.state_dict().keys() == after.state_dict().keys()
    assert all(torch.equal(during.state_dict()[k], v) for k, v in after.state_dict().items())
    ids = torch.randint(0, 40000, (2, 7))
    assert torch.equal(during(ids).logits, after(ids).logits)


def test_from_pretrained_merges_saved_adapters_before_quantizing(tmp_path):
    import attnkit
    from attnkit.nn import add_lora, merge_lora

    torch.manual_seed(0)
    model = add_lora(GPT(GPTConfig.from_preset("gpt-tiny", n_layers=2)), r=4)
    with torch.no_grad():
        for layer in model.modules():
            if hasattr(layer, "lora_B"):
                layer.lora_B.normal_()  # adapters that change the outputs
    model.save_pretrained(tmp_path)
    expected = quantize_int8(merge_lora(attnkit.from_pretrained(tmp_path)))
    got = attnkit.from_pretrained(tmp_path, quantize="int8")
    assert all(torch.equal(got.state_dict()[k], v) for k, v in expected.state_dict().items())
    with pytest.raises(InputError, match="quantize must be one of"):
        attnkit.from_pretrained(tmp_path, quantize="int2")


def test_a_class_from_pretrained_with_config_changes_quantizes_the_changed_model(tied_checkpoint):
    got = GPT.from_pretrained(tied_checkpoint, dropout=0.0, quantize="int8")
    expected = quantize_int8(GPT.from_pretrained(tied_checkpoint, dropout=0.0))
    assert got.config.dropout == 0.0 and isinstance(got.wte, Int8Embedding)
    assert all(torch.equal(got.state_dict()[k], v) for k, v in expected.state_dict().items())
