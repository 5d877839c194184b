"""The CUDA paths against references on the GPU: Hugging Face with identical weights, PyTorch's
own attention backends, the CPU results. Skipped where no CUDA device is present (CI); run them
on a GPU machine with ``pytest tests/test_cuda.py``.

float32 comparisons turn TF32 off (PyTorch's default for matmuls, set here explicitly), so the
≤ 1e-4 logit tolerance of the CPU parity tests holds on the GPU too.
"""

import dataclasses

import pytest
import torch

import attnkit
from attnkit import GPT, GPTConfig
from attnkit.nn import scaled_dot_product_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
transformers = pytest.importorskip("transformers")
CUDA = "cuda"


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def gpt2_pair(tmp_path, **fields):
    """A random transformers GPT-2 and attnkit's model loaded from its checkpoint, both on the GPU."""
    torch.manual_seed(0)
    cfg = dict(vocab_size=211, n_positions=128, n_embd=64, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
               attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**cfg, **fields})).eval()
    hf.save_pretrained(tmp_path)
    return attnkit.from_pretrained(tmp_path, device=CUDA), hf.to(CUDA)


def padded_prompts(vocab=211, B=3, T=12):
    ids = torch.randint(1, vocab, (B, T), device=CUDA)
    mask = torch.ones(B, T, dtype=torch.long, device=CUDA)
    mask[1, :4] = 0  # left padding, as decoding wants it
    mask[2, :9] = 0
    return ids, mask


def test_gpt_logits_and_greedy_tokens_equal_transformers_and_the_cpu(tmp_path):
    ours, hf = gpt2_pair(tmp_path)
    assert next(ours.parameters()).device.type == CUDA
    ids, mask = padded_prompts()
    with torch.no_grad():
        got = ours(ids, attention_mask=mask).logits
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # HF's own rule for padded batches
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    real = mask.bool()
    assert (got[real] - ref[real]).abs().max() <= 1e-4

    kw = dict(max_new_tokens=20, attention_mask=mask)
    tokens = ours.generate(ids, eos_token_id=None, **kw)
    assert tokens.device.type == CUDA
    assert torch.equal(tokens, hf.generate(ids, do_sample=False, pad_token_id=0, eos_token_id=None, **kw))
    cpu = ours.to("cpu").generate(ids.cpu(), eos_token_id=None, max_new_tokens=20, attention_mask=mask.cpu())
    assert torch.equal(cpu, tokens.cpu())


@pytest.mark.parametrize("kw", [dict(num_beams=1), dict(num_beams=3, num_return_sequences=2)])
def test_logits_processors_and_scores_run_on_the_gpu_as_transformers_does(tmp_path, kw):
    """Every tensor the processors make lives on the model's device; tokens and scores equal transformers'."""
    ours, hf = gpt2_pair(tmp_path)
    ids, mask = padded_prompts()
    kw = dict(kw, attention_mask=mask, max_new_tokens=10, repetition_penalty=1.3, no_repeat_ngram_size=2,
              min_new_tokens=3, suppress_tokens=[5], bad_words_ids=[[7]], eos_token_id=0, pad_token_id=1,
              return_dict_in_generate=True, output_scores=True)
    out, expected = ours.generate(ids, **kw), hf.generate(ids, **kw)
    assert out.sequences.device.type == CUDA and torch.equal(out.sequences, expected.sequences)
    for a, b in zip(out.scores, expected.scores):
        assert a.device.type == CUDA and (a - b).abs().nan_to_num(posinf=0, neginf=0).max() <= 1e-4


def test_bf16_weights_decode_as_transformers_does_in_bf16(tmp_path):
    ours, hf = gpt2_pair(tmp_path)
    ours, hf = ours.to(torch.bfloat16), hf.to(torch.bfloat16)
    ids = torch.randint(1, 211, (2, 8), device=CUDA)
    with torch.no_grad():
        got, ref = ours(ids).logits.float(), hf(input_ids=ids).logits.float()
        fp32 = hf.float()(input_ids=ids).logits
    # bf16 keeps 8 bits of mantissa: both libraries sit at bf16 distance from the fp32 logits
    scale = fp32.abs().max()
    assert (got - fp32).abs().max() <= 0.03 * scale and (ref - fp32).abs().max() <= 0.03 * scale
    assert (got - ref).abs().max() <= 0.03 * scale


def test_bf16_autocast_training_step_matches_transformers(tmp_path):
    ours, hf = gpt2_pair(tmp_path)
    ours.train(), hf.train()
    ids = torch.randint(0, 211, (4, 64), device=CUDA)
    losses, grads = {}, {}
    for name, model in (("ours", ours), ("hf", hf)):
        with torch.autocast(CUDA, dtype=torch.bfloat16):
            loss = model(ids, labels=ids).loss
        assert loss.dtype == torch.float32  # the softmax of the loss stays in fp32
        loss.backward()
        losses[name] = loss.item()
        embedding = model.wte if name == "ours" else model.transformer.wte
        grads[name] = embedding.weight.grad.float()
    assert all(p.dtype == torch.float32 for p in ours.parameters())  # autocast keeps fp32 master weights
    with torch.no_grad():
        fp32_loss = hf(input_ids=ids, labels=ids).loss.item()
    assert losses["ours"] == pytest.approx(fp32_loss, rel=1e-2)
    assert losses["ours"] == pytest.approx(losses["hf"], rel=1e-2)
    cos = torch.nn.functional.cosine_similarity(grads["ours"].flatten(), grads["hf"].flatten(), dim=0)
    assert cos > 0.99


def test_causal_self_attention_runs_on_the_flash_kernel_forward_and_backward(tmp_path):
    """No materialised mask on the causal paths: PyTorch's flash kernel (which takes no mask)
    is the only backend allowed, and training, prefill and cached decoding steps all run."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ours, _ = gpt2_pair(tmp_path)
    ours = ours.to(torch.bfloat16)
    ids = torch.randint(0, 211, (2, 64), device=CUDA)
    with torch.no_grad():
        ref = ours(ids).logits.float()  # any backend
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        ours.train()
        ours(ids, labels=ids).loss.backward()
        ours.eval()
        with torch.no_grad():
            flash = ours(ids).logits.float()
        tokens = ours.generate(ids[:, :8], max_new_tokens=16, eos_token_id=None)
    assert torch.allclose(flash, ref, atol=0.05 * ref.abs().max().item())
    assert tokens.shape == (2, 24) and torch.equal(tokens[:, :8], ids[:, :8])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_attention_equals_the_reference_formula(dtype):
    q, k, v = (torch.randn(2, 4, 300, 64, device=CUDA, dtype=dtype) for _ in range(3))
    mask = torch.rand(2, 1, 300, 300, device=CUDA) > 0.3
    mask[0, 0, 5] = False  # a query with no allowed key returns zeros
    for kw in (dict(is_causal=True), dict(mask=mask)):
        fused = scaled_dot_product_attention(q, k, v, **kw)
        ref, _ = scaled_dot_product_attention(q, k, v, need_weights=True, **kw)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(fused, ref, atol=tol, rtol=tol)
    assert torch.equal(fused[0, :, 5], torch.zeros_like(fused[0, :, 5]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_windowed_attention_equals_the_band_mask_on_the_gpu(dtype):
    """A causal sliding window and a bidirectional one, block by block on the GPU, equal the
    reference formula with the band as a mask, forward and backward (8k tokens, window 256)."""
    from attnkit.nn import band_mask

    T = 8192
    q, k, v = (torch.randn(1, 4, T, 64, device=CUDA, dtype=dtype, requires_grad=True) for _ in range(3))
    for kw, band in ((dict(is_causal=True, window=(255, 0)), band_mask(T, T, 255, 0, device=CUDA)),
                     (dict(window=(64, 64)), band_mask(T, T, 64, 64, device=CUDA))):
        ref = scaled_dot_product_attention(q, k, v, mask=band, need_weights=True)[0]
        got = scaled_dot_product_attention(q, k, v, **kw)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(got, ref, atol=tol, rtol=tol)
        g = torch.randn_like(got)
        for a, b in zip(torch.autograd.grad(got, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
            torch.testing.assert_close(a, b, atol=10 * tol, rtol=10 * tol)


def test_causal_attention_memory_grows_linearly_with_length():
    """Forward + backward at 4k and 16k tokens (8 heads × 64, bf16): peak memory over the
    inputs grows with length (4× the tokens, about 4× the memory), not with its square (16×)."""
    peaks = {}
    for n in (4096, 16384):
        q, k, v = (torch.randn(1, 8, n, 64, device=CUDA, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
        torch.cuda.synchronize()
        peaks[n] = torch.cuda.max_memory_allocated() - before
        del q, k, v
    assert peaks[16384] < 2 * 2**30
    assert peaks[16384] / peaks[4096] < 6  # a T×T score matrix would make it 16


def test_marian_beam_search_returns_transformers_tokens(tmp_path):
    torch.manual_seed(0)
    pad = 98
    cfg = transformers.MarianConfig(
        vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=None, init_std=0.3)
    hf = transformers.MarianMTModel(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours, hf = attnkit.from_pretrained(tmp_path, device=CUDA), hf.to(CUDA)
    src = torch.randint(1, pad, (3, 9), device=CUDA)
    mask = torch.ones_like(src)
    mask[1, 6:] = 0
    src = src.masked_fill(mask == 0, pad)
    with torch.no_grad():
        dec = torch.randint(1, pad, (3, 7), device=CUDA)
        got = ours(src, mask, decoder_input_ids=dec).logits
        assert (got - hf(input_ids=src, attention_mask=mask, decoder_input_ids=dec).logits).abs().max() <= 1e-4
    kw = dict(attention_mask=mask, num_beams=4, max_new_tokens=12)
    assert torch.equal(ours.generate(src, pad_token_id=pad, **kw), hf.generate(input_ids=src, **kw))


def test_bert_outputs_equal_transformers_on_a_padded_batch(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=40)).eval()
    hf.save_pretrained(tmp_path)
    ours, hf = attnkit.from_pretrained(tmp_path, device=CUDA), hf.to(CUDA)
    ids = torch.randint(1, 120, (3, 20), device=CUDA)
    mask = (torch.arange(20, device=CUDA)[None] < torch.tensor([[20], [11], [3]], device=CUDA)).long()
    with torch.no_grad():
        got, ref = ours(ids, attention_mask=mask), hf(input_ids=ids, attention_mask=mask)
    real = mask.bool()
    assert (got.last_hidden_state[real] - ref.last_hidden_state[real]).abs().max() <= 1e-4
    assert (got.pooler_output - ref.pooler_output).abs().max() <= 1e-4


class _FixedBatches:
    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def next_batch(self, generator, rank=0, world_size=1):
        self.i += 1
        return self.batches[(self.i - 1) % len(self.batches)]

    def eval_batches(self, rank=0, world_size=1):
        yield self.batches[0]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trainer_trains_on_cuda_and_its_checkpoint_loads_on_the_cpu(tmp_path, precision):
    from attnkit.training import TrainConfig, Trainer

    g = torch.Generator().manual_seed(1)
    counting = (torch.randint(0, 64, (4, 8, 1), generator=g) + torch.arange(32)) % 64  # learnable: t + 1 follows t
    data = [{"input_ids": ids, "labels": ids} for ids in counting]
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=64))
    cfg = TrainConfig(max_steps=30, lr=1e-2, warmup_steps=2, eval_every=0, save_every=30, progress=False,
                      device=CUDA, precision=precision)
    trainer = Trainer(model, _FixedBatches(data), cfg, tmp_path)
    history = trainer.train()
    assert next(trainer.model.parameters()).device.type == CUDA
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]  # it learns (fp16: through the grad scaler)
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    loaded = attnkit.from_pretrained(tmp_path / "checkpoints" / "step-30")
    ids = data[0]["input_ids"]
    with torch.no_grad():
        on_gpu = trainer.model.eval()(ids.to(CUDA)).logits.cpu()
        assert (loaded(ids).logits - on_gpu).abs().max() <= 1e-4

    # resuming on the GPU restores weights, optimizer and step
    more = Trainer(GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=64)), _FixedBatches(data),
                   dataclasses.replace(cfg, max_steps=32), tmp_path, resume=True)
    assert more.step == 30
    assert more.train()[-1]["step"] == 32


def test_fp16_fused_loss_gradients_stay_finite_and_close_to_the_plain_path():
    from attnkit.nn import linear_cross_entropy

    torch.manual_seed(0)
    hidden, weight = torch.randn(2048, 64, device=CUDA), torch.randn(512, 64, device=CUDA) * 0.02
    hidden[:, 0] = 80.0  # a large feature and one frequent target: the weight gradient's fp16 sums are big
    targets = torch.full((2048,), 7, device=CUDA)
    targets[::3] = torch.randint(0, 512, (683,), device=CUDA)
    grads = {}
    for name, fn in (("fused", lambda w: linear_cross_entropy(hidden, w, targets)),
                     ("plain", lambda w: torch.nn.functional.cross_entropy((hidden @ w.T).float(), targets))):
        w = weight.clone().requires_grad_()
        with torch.autocast(CUDA, dtype=torch.float16):
            (fn(w) * 1024.0).backward()
        grads[name] = w.grad / 1024.0
    ref = weight.double().requires_grad_()
    torch.nn.functional.cross_entropy(hidden.double() @ ref.T, targets).backward()
    assert torch.isfinite(grads["fused"]).all()
    err = {k: ((g.double() - ref.grad).norm() / ref.grad.norm()).item() for k, g in grads.items()}
    assert err["fused"] <= max(2 * err["plain"], 1e-3), err


def test_cli_decodes_on_the_gpu_in_bf16_as_the_api_does(tmp_path):
    from typer.testing import CliRunner

    from attnkit.cli import app
    from attnkit.tokenizers import Tokenizer

    words = ["def value(x): return x + 1", "class Data: pass", "import os"] * 20
    (tmp_path / "c.txt").write_text("\n".join(words))
    tok = Tokenizer.train_bpe([tmp_path / "c.txt"], vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=tok.vocab_size))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    gpu = attnkit.from_pretrained(tmp_path / "m", device=CUDA, dtype=torch.bfloat16)
    ids = torch.tensor([tok.encode("def")], device=CUDA)
    expected = tok.decode(gpu.generate(ids, max_new_tokens=8, eos_token_id=tok.eos_token_id)[0, 1:],
                          skip_special_tokens=True)
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "m"), "--prompt", "def", "--max-new-tokens", "8",
                                      "--temperature", "0", "--device", "cuda", "--dtype", "bf16"])
    assert result.exit_code == 0, result.output
    assert result.output == "def" + expected + "\n"
    sampled = CliRunner().invoke(app, ["generate", str(tmp_path / "m"), "--prompt", "def", "--device", "cuda",
                                       "--max-new-tokens", "8"])
    assert sampled.exit_code == 0, sampled.output  # the sampling generator lives on the GPU
    with pytest.raises(attnkit.InputError, match="generator is on cpu but the model is on cuda"):
        gpu.generate(ids, do_sample=True, generator=torch.Generator())
