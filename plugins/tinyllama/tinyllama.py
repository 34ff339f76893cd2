"""TinyLlama 1.1B (https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0), a Llama-family model."""

from litezoo.core import HubPin, ModelSpec, Signatures, Variant, hookimpl
from litezoo.families import llama

SOURCE = HubPin(
    repo_id="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    revision="fe8a4ea1ffedaf415f4da2f062534de366a451e6",
    sha256={
        "config.json": "486bedda3a6988332e60d9638a09ca4b260d34ebcf1b19e22cf3b140b63d8fe9",
        "generation_config.json":
            "18046d04f5bd8b4998095ecabdd17a1bf0053d9acdccead4a05be4a3575f3c5c",
        "model.safetensors": "6e6001da2106d4757498752a021df6c2bdc332c650aae4bae6b0c004dcf14933",
        "special_tokens_map.json":
            "82d96d7a9e6ced037f12394b7ea6a5b02e6ca87e0d11edaa8d60d9be857ce7db",
        "tokenizer.json": "bcd04f0eadf90287bd26e1a183ac487d8a141b09b06aecb7725bbdd343640f2e",
        "tokenizer.model": "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347",
        "tokenizer_config.json": "7b41ba7d0eb91e77914ca3dafde559ea3e19878769b7e68409e89bed5222e77a",
    },
)

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
    version="0.7.0",
    description="TinyLlama 1.1B chat",
    url="https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    license="Apache-2.0",
    variants={"1.1b": Variant(CONFIG_1_1B, source=SOURCE, params=1_100_048_384), "tiny": Variant(CONFIG_TINY, random_weights=True)},
    default_variant="1.1b",
    family=llama.FAMILY,
    # verify_8: speculative decoding; windows: short contexts attend over (and read) 256, 512 or
    # 768 cache entries, not 1024, in decode (256 or 512 in prefill; docs/speed.md).
    signatures=Signatures(prefill_seq_lens=(32, 128), kv_cache_max_len=1024, verify_lengths=(8,),
                          decode_windows=(256, 512, 768), prefill_windows=(256, 512)),
    default_recipe="dynamic_int8",
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
