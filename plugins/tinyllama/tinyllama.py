"""TinyLlama 1.1B (https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0), a Llama-family model."""

from litezoo.core import ModelSpec, Signatures, Variant, hookimpl
from litezoo.core.families import llama

# https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json
CONFIG_1_1B = dict(
    model_type="llama",
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    hidden_act="silu",
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)
# The same architecture shrunk for tests: 2 layers, grouped-query attention kept (4 heads, 2 KV).
CONFIG_TINY = {**CONFIG_1_1B, **dict(vocab_size=256, hidden_size=64, intermediate_size=128,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2)}

SPEC = ModelSpec(
    name="tinyllama",
    version="0.1.0",
    description="TinyLlama 1.1B chat",
    variants={"1.1b": Variant(CONFIG_1_1B), "tiny": Variant(CONFIG_TINY, synthetic=True)},
    default_variant="1.1b",
    build=llama.build,
    tensor_names=llama.TENSOR_NAMES,
    signatures=Signatures(prefill_seq_lens=(32, 128), kv_cache_max_len=1024),
    default_recipe="dynamic_int8",
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
