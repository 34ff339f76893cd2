"""Gemma 2B (https://huggingface.co/google/gemma-2b)."""

from litezoo.core import ModelSpec, Signatures, Variant, hookimpl
from litezoo.families import gemma

# No source pin yet: a pin needs the sha256 of every file at one revision, and the public record
# found so far is incomplete (searched 2026-11-30). Revision 9cf48e52b224239de00d483ec8eb84fb8d0f3a3a
# is the one several public projects pin (e.g. a Megatron-Bridge Gemma 2B recipe). LFS sha256s
# appear as blob names in a Hugging Face cache committed to github.com/SubhamZap/gemma, of an
# unrecorded revision:
#   model-00001-of-00002.safetensors  98caad07f1e1d17fede7734906d6881d4cb231e1d0cd2ebcf7fc8a6317eee4d6
#   model-00002-of-00002.safetensors  3342a2f7db857bc9873c699eef1416eb2b320603e5e042a6f7736689b26382cb
#   tokenizer.json                    d0d908b4f9326e0998815690e325b6abbd378978553e10627924dd825db7e243
#   tokenizer.model                   61a7b147390c64585d6c3543dd6fc636906c9af3865a5548f27f31aee1d4c8e2
# The small files (config.json, generation_config.json, model.safetensors.index.json,
# special_tokens_map.json, tokenizer_config.json) are plain git blobs there, so no sha256 of theirs
# is public: pin once someone who accepted the licence hashes them at the revision.

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
