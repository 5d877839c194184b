"""DeepSeek-V2 against `transformers`' DeepseekV2ForCausalLM with identical weights, both
directions: DeepSeek-V3's latent attention with DeepSeek-V2's router (softmax scores, no score
bias, greedy or group-limited greedy with each group scored by its best expert, the weights not
renormalised)."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_deepseek_interop import DEEPSEEK, YARN, draw_weights
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V2 = {**{k: v for k, v in DEEPSEEK.items() if k not in ("n_group", "topk_group")}, "routed_scaling_factor": 1.5,
      "norm_topk_prob": False}
ROUTERS = {"greedy": dict(topk_method="greedy"),
           "group limited": dict(topk_method="group_limited_greedy", n_group=4, topk_group=1),  # both from one group
           "direct queries, yarn": dict(topk_method="greedy", q_lora_rank=None, rope_parameters=YARN)}


def hf_deepseek_v2(path, **overrides):
    """A random ``DeepseekV2ForCausalLM`` saved to ``path`` (``draw_weights``)."""
    torch.manual_seed(0)
    hf = draw_weights(transformers.DeepseekV2ForCausalLM(transformers.DeepseekV2Config(**{**V2, **overrides})))
    hf.eval().save_pretrained(path)
    return hf


@pytest.mark.parametrize("router", ROUTERS)
def test_deepseek_v2_gives_transformers_logits_loss_and_saves(tmp_path, router):
    hf = hf_deepseek_v2(tmp_path, **ROUTERS[router])
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.DeepseekV2 and c.router_scoring == "softmax" and not c.score_bias
    assert c.expert_group_score == ("max" if router == "group limited" else None)
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["model_type"] == "deepseek_v2" and saved["topk_method"] == ROUTERS[router]["topk_method"]
    again = transformers.DeepseekV2ForCausalLM.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() < 1e-4


def test_each_deepseek_v2_router_feature_matters(tmp_path):
    """The group score (the best expert, not the two best), the group limit, the scaling, the
    weights left unnormalised: leaving out any one changes the logits."""
    hf = hf_deepseek_v2(tmp_path, **ROUTERS["group limited"])
    model = attnkit.from_pretrained(tmp_path)
    ids = batch(20)[0][:1]
    with torch.no_grad():
        ref = hf(ids).logits
        for change in [dict(expert_group_score=None), dict(expert_groups=None, expert_groups_per_token=None,
                                                           expert_group_score=None),
                       dict(routed_scaling_factor=1.0), dict(normalize_expert_weights=True)]:
            other = attnkit.DeepseekV2(model.config.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_deepseek_v2_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_deepseek_v2(tmp_path, **ROUTERS["group limited"])
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_unsupported_topk_method_is_refused_and_the_lite_preset_counts(tmp_path):
    hf_deepseek_v2(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "topk_method": "noaux_tc"}))
    with pytest.raises(ConfigError, match="topk_method 'noaux_tc'"):
        attnkit.from_pretrained(tmp_path)
    lite = dict(vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
                num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16, n_shared_experts=2,
                n_routed_experts=64, num_experts_per_tok=6, kv_lora_rank=512, q_lora_rank=None, qk_rope_head_dim=64,
                qk_nope_head_dim=128, v_head_dim=128, first_k_dense_replace=1)
    with torch.device("meta"):
        ours = attnkit.DeepseekV2(attnkit.DeepseekV2Config.from_preset("deepseek-v2-lite"))
        theirs = transformers.DeepseekV2ForCausalLM(transformers.DeepseekV2Config(**lite))
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(ours) == total(theirs) == 15_706_484_224
