"""LoRA (and DoRA) in training: the Trainer trains only the adapters, its checkpoints keep them beside the base
weights, and a run resumed from one logs the losses of a run that never stopped; ``[model] lora``
in a recipe adds them."""

import pytest
import torch

from attnkit import ConfigError
from attnkit.nn import add_lora
from attnkit.training import Trainer
from attnkit.training.recipe import ModelSection
from tests.training.test_trainer import FixedBatches, batches, config, metrics, tiny_model


def lora_model(seed, dora=False):
    model = tiny_model()  # the same base weights in every run
    torch.manual_seed(seed)  # ... and adapters drawn from this seed
    return add_lora(model, r=4, alpha=8, targets=("qkv_proj", "fc_in"), dora=dora)


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_a_resumed_lora_run_logs_the_losses_of_an_unbroken_one(tmp_path, dora):
    base = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    data = batches()
    whole = lora_model(seed=1, dora=dora)
    Trainer(whole, FixedBatches(data), config(max_steps=4, save_every=2), tmp_path / "whole").train()
    Trainer(lora_model(seed=1, dora=dora), FixedBatches(data), config(max_steps=2, save_every=2),
            tmp_path / "split").train()
    resumed = lora_model(seed=7, dora=dora)  # other adapters: the checkpoint's must replace them
    trainer = Trainer(resumed, FixedBatches(data[2:] + data[:2]), config(max_steps=4, save_every=2), tmp_path / "split",
                      resume=True)
    assert trainer.step == 2
    trainer.train()
    assert [r["loss"] for r in metrics(tmp_path / "split")] == [r["loss"] for r in metrics(tmp_path / "whole")]
    final, again = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(final[k], again[k]) for k in final)
    for name, value in base.items():  # the base did not move; the adapters did
        assert torch.equal(final[name], value), name
    assert not torch.equal(final["decoder.layers.0.attn.qkv_proj.lora_B"], torch.zeros(96, 4))
    if dora:  # the magnitudes trained too
        start = torch.linalg.norm(base["decoder.layers.0.attn.qkv_proj.weight"], dim=1)
        assert not torch.allclose(final["decoder.layers.0.attn.qkv_proj.lora_magnitude"], start)


def test_a_recipe_adds_adapters_and_names_bad_fields():
    model = ModelSection(preset="gpt-tiny", lora={"r": 2, "targets": ["out_proj"]}).build(vocab_size=64)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {f"decoder.layers.{i}.attn.out_proj.lora_{p}" for i in range(model.config.n_layers) for p in "AB"}
    with pytest.raises(ConfigError, match="model.lora: unknown field 'rank'"):
        ModelSection(preset="gpt-tiny", lora={"rank": 2}).build(vocab_size=64)
    with pytest.raises(ConfigError, match="model.lora: LoRA rank"):
        ModelSection(preset="gpt-tiny", lora={"r": 0}).build(vocab_size=64)
