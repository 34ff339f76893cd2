"""One set of weights for every peer: the zoo's seeded random checkpoint of the real size
(sources/random_weights.py: transformers' safetensors plus a SentencePiece tokenizer of the
config's vocabulary, which llama.cpp's converter and the bundles need)."""

import pathlib

from litezoo.artifacts import files
from litezoo.sources.random_weights import sentencepiece_model, write_tokenizer  # noqa: F401


def bench_dir() -> pathlib.Path:
  """Conversions of the peers, reused by later runs."""
  return files.cache_root() / "bench"
