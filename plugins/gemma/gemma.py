"""Gemma 2B (https://huggingface.co/google/gemma-2b)."""

from litezoo.core import ModelSpec, Signatures, Variant, hookimpl
from litezoo.families import gemma

# https://huggingface.co/google/gemma-2b/blob/main/config.json
CONFIG_2B = dict(
    model_type="gemma",
    vocab_size=256000,
    hidden_size=2048,
    intermediate_size=16384,
    num_hidden_layers=18,
    num_attention_heads=8,
    num_key_value_heads=1,
    head_dim=256,
    hidden_act="gelu",
    hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=8192,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
)
# Shrunk for tests, keeping multi-query attention and a head_dim that differs from hidden/heads.
CONFIG_TINY = {**CONFIG_2B, **dict(vocab_size=256, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=2, head_dim=48)}

SPEC = ModelSpec(
    name="gemma",
    version="0.4.0",
    description="Gemma 2B base",
    url="https://huggingface.co/google/gemma-2b",
    license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    variants={"2b": Variant(CONFIG_2B, params=2_506_172_416), "tiny": Variant(CONFIG_TINY, random_weights=True)},
    default_variant="2b",
    family=gemma.FAMILY,
    signatures=Signatures(prefill_seq_lens=(32, 128), kv_cache_max_len=1024,
                          verify_lengths=(8,)),  # verify_8: speculative decoding
    default_recipe="dynamic_int8",
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
