"""Phi-2 2.7B (https://huggingface.co/microsoft/phi-2)."""

from litezoo.core import ModelSpec, Signatures, Variant, hookimpl
from litezoo.families import phi

# No source pin yet: a pin needs the sha256 of every file at one revision, and the public record
# is incomplete (searched 2026-11-30 and 2026-12-01). At revision
# 810d367871c1d460086d9f82db8696f2e0a0fcd0: vocab.json 3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7
# and merges.txt 1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5 (a Julia tokenizer
# package's pinned assets), model-00001-of-00002.safetensors
# 7fbcdefa72edf7527bf5da40535b57d9f5bd3d16829b94a9d25d2b457df62e84 (one public download script);
# the second shard, the index, config and tokenizer files are not public anywhere found.

# https://huggingface.co/microsoft/phi-2/blob/main/config.json
CONFIG_2_7B = dict(
    model_type="phi",
    vocab_size=51200,
    hidden_size=2560,
    intermediate_size=10240,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    hidden_act="gelu_new",
    max_position_embeddings=2048,
    layer_norm_eps=1e-5,
    partial_rotary_factor=0.4,
    rope_theta=10000.0,
    qk_layernorm=False,
    tie_word_embeddings=False,
    bos_token_id=50256,
    eos_token_id=50256,
)
# Shrunk for tests; head_dim 16 keeps the partial rotary slice (0.4 -> 6 dims) non-trivial.
CONFIG_TINY = {**CONFIG_2_7B, **dict(vocab_size=256, hidden_size=64, intermediate_size=128,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=4)}

SPEC = ModelSpec(
    name="phi2",
    version="0.5.0",
    description="Phi-2 2.7B base",
    url="https://huggingface.co/microsoft/phi-2",
    license="MIT",
    variants={"2.7b": Variant(CONFIG_2_7B, params=2_779_683_840), "tiny": Variant(CONFIG_TINY, random_weights=True)},
    default_variant="2.7b",
    family=phi.FAMILY,
    signatures=Signatures(prefill_seq_lens=(32, 128), kv_cache_max_len=1024,
                          verify_lengths=(8,)),  # verify_8: speculative decoding
    default_recipe="dynamic_int8",
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
