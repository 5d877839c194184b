import os

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (CI must not fail by chance); search for
# new counterexamples with HYPOTHESIS_PROFILE=explore.
settings.register_profile("attnkit", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "attnkit"))

# Deterministic, quiet, and polite to a 2-core CI machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def hf_gpt2_twin():
    """Factory: ``(attnkit GPT, transformers GPT2LMHeadModel)`` with identical weights, both in eval mode.

    The key mapping is written out here, independently of ``attnkit.interop``, so GPT and
    decoding tests have a reference that does not rely on the code under test.
    """

    def make(**fields):
        from transformers import GPT2Config, GPT2LMHeadModel

        from attnkit import GPT, GPTConfig

        cfg = GPTConfig.from_preset("gpt-tiny", **fields)
        ours = GPT(cfg).eval()
        hf = GPT2LMHeadModel(GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.n_positions, n_embd=cfg.d_model, n_layer=cfg.n_layers,
            n_head=cfg.n_heads, activation_function="gelu_new", layer_norm_epsilon=cfg.norm_eps, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
        )).eval()
        sd = {"transformer.wte.weight": ours.wte.weight, "transformer.wpe.weight": ours.wpe.weight,
              "transformer.ln_f.weight": ours.decoder.norm.weight, "transformer.ln_f.bias": ours.decoder.norm.bias}
        pairs = {"ln_1": "attn_norm", "attn.c_attn": "attn.qkv_proj", "attn.c_proj": "attn.out_proj",
                 "ln_2": "ffn_norm", "mlp.c_fc": "ffn.fc_in", "mlp.c_proj": "ffn.fc_out"}
        for i, layer in enumerate(ours.decoder.layers):
            for theirs, mine in pairs.items():
                module = layer.get_submodule(mine)
                transpose = not theirs.startswith("ln")  # HF's Conv1D stores (in, out)
                sd[f"transformer.h.{i}.{theirs}.weight"] = module.weight.T if transpose else module.weight
                sd[f"transformer.h.{i}.{theirs}.bias"] = module.bias
        missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
        assert not unexpected and all(k == "lm_head.weight" or k.endswith(".attn.bias") for k in missing), missing
        hf.tie_weights()
        return ours, hf

    return make


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A tiny text corpus and ``--set`` overrides that shrink ``recipes/gpt-stdlib.toml`` to seconds.

    Returns a namespace with ``recipe`` (path), ``corpus`` (dir) and ``overrides`` (list of
    ``section.field=value``), for training, checkpoint and CLI tests.
    """
    import random
    from pathlib import Path
    from types import SimpleNamespace

    rng = random.Random(0)
    words = "def class return import for while if else self value data print None True".split()
    corpus = tmp_path_factory.mktemp("corpus")
    lines = [" ".join(rng.choice(words) for _ in range(10)) for _ in range(300)]
    (corpus / "code.txt").write_text("\n".join(lines) + "\n")
    overrides = [
        f"data.path={corpus}", "tokenizer.vocab_size=300", "model.config.n_layers=2", "model.config.d_model=32",
        "model.config.n_heads=2", "model.config.n_positions=32", "train.batch_size=4", "train.max_steps=6",
        "train.warmup_steps=2", "train.eval_every=3", "train.eval_iters=2", "train.save_every=3",
        "train.keep_last=3", "train.progress=false", "train.device=cpu",
    ]
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "gpt-stdlib.toml"
    return SimpleNamespace(recipe=recipe, corpus=corpus, overrides=overrides)


PANGRAMS = "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs!"


@pytest.fixture(scope="session")
def memorized_gpt():
    """``(model, tokenizer)``: a tiny GPT that has learned ``PANGRAMS`` by heart with a character
    tokenizer (~2 s), so that what it generates is text, not noise. Shared: do not modify it."""
    from attnkit import GPT, GPTConfig
    from attnkit.tokenizers import Tokenizer

    tok = Tokenizer.train_char([PANGRAMS])
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=tok.vocab_size, n_positions=64))
    ids = torch.tensor(tok.encode(PANGRAMS))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 33, (16,))
        batch = torch.stack([ids[i:i + 33] for i in starts.tolist()])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


@pytest.fixture
def longrope_phi3():
    """Factory: a tiny Phi-3 with LongRoPE whose original context is ``original`` positions (past
    it every position rotates anew and decoding refeeds its cache), weights x4 for sharp logits."""
    import attnkit

    def make(original: int, vocab_size: int, n_positions: int):
        torch.manual_seed(0)
        scaling = {"rope_type": "longrope", "factor": 4.0, "short_factor": [1.0, 1.5, 3.0, 5.0],
                   "long_factor": [1.0, 4.0, 9.0, 20.0], "original_max_position_embeddings": original,
                   "attention_factor": 1.2}
        model = attnkit.Phi3(attnkit.Phi3Config.from_preset("phi3-tiny", vocab_size=vocab_size, n_positions=n_positions,
                                                             rope_scaling=scaling)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(4)
        return model
    return make
