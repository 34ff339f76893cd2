"""example_llama: a Llama-family model registered from outside the zoo's tree.

The module is the same as an in-tree plugin's (plugins/<name>/<name>.py): a config, its family
and the hook. Only the way the zoo finds it differs: the `litezoo` entry point in
pyproject.toml instead of the plugins/ folder.
"""

from litezoo.core import ModelSpec, Signatures, Variant, hookimpl
from litezoo.families import llama

# TinyLlama's architecture (its config.json:
# https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json) shrunk to test
# size: 2 layers, grouped-query attention (4 heads, 2 KV heads), an LM head tied to the embedding.
CONFIG_TINY = dict(
    model_type="llama",
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
)

SPEC = ModelSpec(
    name="example_llama",
    version="0.1.0",
    description="Example out-of-tree plugin: a tiny Llama with random weights",
    # Random weights (seeded, written once by transformers): no checkpoint needed.
    variants={"tiny": Variant(CONFIG_TINY, random_weights=True)},
    default_variant="tiny",
    family=llama.FAMILY,
    signatures=Signatures(prefill_seq_lens=(8, 32), kv_cache_max_len=64),
    default_recipe="dynamic_int8",
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
