"""Tiny configs of the model types the zoo builds without a plugin, each keeping what makes its
family differ (for the conformance suite: transformers writes each as a random checkpoint, and
the zoo imports it by its config.json alone, as `--checkpoint=DIR` does).

Windows, caps and RoPE scalings are shrunk with the sizes so that a 23-token prompt crosses them.
"""

_SMALL = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
              rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=None)

TINY = {
    # Llama 3.2 1B/3B: llama3 RoPE scaling (the medium band crossed with head_dim 16), tied head.
    "llama3": dict(_SMALL, model_type="llama", max_position_embeddings=131072, rope_theta=500000.0,
                   rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                     high_freq_factor=4.0, original_max_position_embeddings=64),
                   tie_word_embeddings=True, head_dim=16),
    "mistral": dict(_SMALL, model_type="mistral", sliding_window=6, head_dim=16,
                    tie_word_embeddings=False),
    "ministral": dict(_SMALL, model_type="ministral", sliding_window=6, head_dim=16,
                      layer_types=["sliding_attention", "full_attention"]),
    # Qwen2.5 0.5B: q/k/v biases, tied head.
    "qwen2": dict(_SMALL, model_type="qwen2", tie_word_embeddings=True, rope_theta=1000000.0),
    # Qwen2 with its sliding window turned on for the layers past max_window_layers.
    "qwen2_sliding": dict(_SMALL, model_type="qwen2", use_sliding_window=True, sliding_window=5,
                          max_window_layers=1, tie_word_embeddings=False),
    # Qwen3: QK-norm, head_dim not hidden_size / heads.
    "qwen3": dict(_SMALL, model_type="qwen3", head_dim=32, tie_word_embeddings=True,
                  rope_theta=1000000.0),
    # Gemma 2: caps that bite on random weights, query_pre_attn_scalar != head_dim.
    "gemma2": dict(_SMALL, model_type="gemma2", head_dim=16, query_pre_attn_scalar=24,
                   sliding_window=6, attn_logit_softcapping=0.05, final_logit_softcapping=3.0,
                   hidden_activation="gelu_pytorch_tanh"),
    # Phi-3-mini-4k: fused projections, a sliding window on every layer.
    "phi3": dict(_SMALL, model_type="phi3", sliding_window=6, max_position_embeddings=4096,
                 original_max_position_embeddings=4096, tie_word_embeddings=False),
    # Phi-4-mini / Phi-3.5: partial rotary (0.75), LongRoPE (short factors inside the original
    # context), tied head (Phi-4-mini).
    "phi3_longrope": dict(
        _SMALL, model_type="phi3", max_position_embeddings=256, original_max_position_embeddings=64,
        partial_rotary_factor=0.75, tie_word_embeddings=True, sliding_window=None,
        rope_scaling=dict(type="longrope", short_factor=[1.0, 1.1, 1.3, 1.7, 2.2, 3.0],
                          long_factor=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0])),
    # SmolLM3: the second layer has no RoPE.
    "smollm3": dict(_SMALL, model_type="smollm3", no_rope_layers=[1, 0], tie_word_embeddings=True),
    # OLMo 2: post-norms, QK-norm over all heads. Weights drawn wider than transformers' 0.02: at
    # 0.02 its logits are near flat (top two 0.07 apart), so int8's rounding picks another token.
    "olmo2": dict(_SMALL, model_type="olmo2", tie_word_embeddings=False, initializer_range=0.05),
    # Granite 3: Granite 3.1 2B's multipliers.
    "granite": dict(_SMALL, model_type="granite", embedding_multiplier=12.0,
                    residual_multiplier=0.22, logits_scaling=8.0, attention_multiplier=0.015625,
                    tie_word_embeddings=True),
}
