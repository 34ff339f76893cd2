"""Gemma 2B (https://huggingface.co/google/gemma-2b) and its instruction-tuned 2B-it."""

from litezoo.core import HubPin, ModelSpec, Signatures, Variant, hookimpl
from litezoo.families import gemma

# The instruction-tuned 2B at the commit that was `main` on 2024-02-29. Every sha256 was read from a
# public copy of that commit's tree (github.com/ananddhanabal/gemma, a clone of the hub repository
# with its commit ids): LFS files from their pointers, small files hashed from blobs whose git ids
# match the commit's.
SOURCE_2B_IT = HubPin(
    repo_id="google/gemma-2b-it",
    revision="718cb189da9c5b2e55abe86f2eeffee9b4ae0dad",
    sha256={
        "config.json": "4d8c4b061fad0e3f51df4f8501873531a4d9fc5b70a7b09e2231d18a12ad7d27",
        "generation_config.json":
            "c89f77c237d7bc5efa9931a84ad7dd4503adf229dd9ea78ddd1d629f3dfb5bdf",
        "model.safetensors.index.json":
            "1b32948684e244670c6d7c9a9dc723bce5d4b2b34319879c9c1844a0cbf1a15a",
        "model-00001-of-00002.safetensors":
            "561656f892a2a1ca0837ca529c5ce820a72b40f4f563b1cd0a1acc0b3899c30c",
        "model-00002-of-00002.safetensors":
            "20fe2ee66bf1361241a6c522091a5e0328fc6c1703f93734889fa381fcf8760c",
        "special_tokens_map.json":
            "5b36db1ae0240191639152e5edfc68785230efb3b3cbb3ba546687a5a9e9c680",
        "tokenizer.json": "05e97791a5e007260de1db7e1692e53150e08cea481e2bf25435553380c147ee",
        "tokenizer.model": "61a7b147390c64585d6c3543dd6fc636906c9af3865a5548f27f31aee1d4c8e2",
        "tokenizer_config.json": "4667139abbffdcb4404e0222e68333dfe8a9c349a2807340f78f28ae41f23384",
    },
    gated=True,
)

# The base 2B at the commit that was `main` from March 2024 (searched 2026-12-02). Two public
# copies of a Hugging Face cache of it, which names LFS blobs by their sha256 and other blobs by
# their git id: github.com/AmballaAvinash/Arithmetic-Sampling (commit c57c03cc) holds
# refs/main = this revision and its snapshot's four tokenizer files; github.com/SubhamZap/gemma
# (commit 3673689d, a download of `main` by 2024-03-04 with the same tokenizer blobs) gives the
# shards' sha256 and the git ids of config.json, generation_config.json and the index, which are
# 2b-it's files above (same git ids; their bytes hashed from the 2b-it clone). Should the shards or
# config differ at this revision after all, the check refuses them by name, never loads them.
SOURCE_2B = HubPin(
    repo_id="google/gemma-2b",
    revision="9d067f00def958594aaa16b39a65b07d69ca655b",
    sha256={
        "config.json": SOURCE_2B_IT.sha256["config.json"],
        "generation_config.json": SOURCE_2B_IT.sha256["generation_config.json"],
        "model.safetensors.index.json": SOURCE_2B_IT.sha256["model.safetensors.index.json"],
        "model-00001-of-00002.safetensors":
            "98caad07f1e1d17fede7734906d6881d4cb231e1d0cd2ebcf7fc8a6317eee4d6",
        "model-00002-of-00002.safetensors":
            "3342a2f7db857bc9873c699eef1416eb2b320603e5e042a6f7736689b26382cb",
        "special_tokens_map.json":
            "db82f8bd9b25d14f9c788e6bde64de84d42f1c2538f1c245ba6cb3e872d14b18",
        "tokenizer.json": "d0d908b4f9326e0998815690e325b6abbd378978553e10627924dd825db7e243",
        "tokenizer.model": SOURCE_2B_IT.sha256["tokenizer.model"],
        "tokenizer_config.json": "acb0c767881929483d11af25020fc4744c474eed09101a5752d4d443a13d3e55",
    },
    gated=True,
)

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
    version="0.7.0",
    description="Gemma 2B (base and instruction-tuned)",
    url="https://huggingface.co/google/gemma-2b",
    license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    # 2b-it's config.json is byte-identical to 2b's.
    variants={"2b-it": Variant(CONFIG_2B, source=SOURCE_2B_IT, params=2_506_172_416),
              "2b": Variant(CONFIG_2B, source=SOURCE_2B, params=2_506_172_416),
              "tiny": Variant(CONFIG_TINY, random_weights=True)},
    default_variant="2b-it",
    family=gemma.FAMILY,
    signatures=Signatures(prefill_seq_lens=(32, 128), kv_cache_max_len=1024,
                          verify_lengths=(8,)),  # verify_8: speculative decoding
    default_recipe="dynamic_int8",
)


@hookimpl
def litezoo_register_models(register):
  register(SPEC)
