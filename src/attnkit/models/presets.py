"""Named sizes of every family: ``model_type -> preset name -> config fields``.

``Config.from_preset(name)`` reads this table. Sizes follow the papers and the published
checkpoints; the small ``*-tiny`` presets are for tests and demos.
"""

PRESETS: dict[str, dict[str, dict]] = {
    "gpt2": {
        # Radford et al. 2019, Table 2; layer counts and widths as the released checkpoints.
        "gpt2": dict(n_layers=12, n_heads=12, d_model=768),
        "gpt2-medium": dict(n_layers=24, n_heads=16, d_model=1024),
        "gpt2-large": dict(n_layers=36, n_heads=20, d_model=1280),
        "gpt2-xl": dict(n_layers=48, n_heads=25, d_model=1600),
        "gpt-tiny": dict(vocab_size=256, n_positions=64, n_layers=2, n_heads=4, d_model=32, bos_token_id=None, eos_token_id=None),
        "gpt-small": dict(
            vocab_size=4096, n_positions=256, n_layers=6, n_heads=6, d_model=384, bos_token_id=None, eos_token_id=None
        ),
    },
}
