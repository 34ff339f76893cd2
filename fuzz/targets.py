"""Atheris fuzz targets for the readers of files from strangers, and the recipe parser.

Each target feeds one input to the zoo's own entry point and lets through only the error type
that entry point documents (a ZooError naming the problem); anything else, a hang or a crash in
native code is a finding. Run them with fuzz/fuzz.py, which adds seeds and counts results:

  python -m litezoo.fuzz.targets gguf [libFuzzer flags...] [corpus dirs...]
"""

import os
import pathlib
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["litezoo.sources.validate", "litezoo.sources.gguf",
                                         "litezoo.sources.safetensors", "litezoo.quant.recipes",
                                         "gguf.gguf_reader"]):
  # Imported here, not lazily inside the first input: a first input that pays for importing
  # torch would be timed as a hang.
  import gguf.gguf_reader  # pylint: disable=unused-import
  import torch  # pylint: disable=unused-import
  from litezoo import sources
  from litezoo.families import llama
  from litezoo.sources import gguf as zoo_gguf, validate
  from litezoo.sources import safetensors as safetensors_source
  from litezoo.quant import recipes

_SCRATCH = pathlib.Path(tempfile.mkdtemp(prefix="litezoo-fuzz-"))
_CONFIG = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 128}


def _write(name: str, data: bytes) -> pathlib.Path:
  path = _SCRATCH / name
  path.write_bytes(data)
  return path


def gguf(data: bytes) -> None:
  """A GGUF checkpoint: opened (its config read), every tensor loaded."""
  path = _write("input.gguf", data)
  try:
    source = sources.open_checkpoint(path, gguf=llama.GGUF)
    assert isinstance(source.config(), dict)
    for name in source.names():
      assert tuple(source.load(name).shape) == source.shape(name), name
  except zoo_gguf.GGUFError:
    pass


def safetensors(data: bytes) -> None:
  """A safetensors file, or (first byte odd) a sharded directory: the rest split at the first
  NUL into the index JSON and one shard named in it."""
  if not data:
    return
  directory = _SCRATCH / "checkpoint"
  directory.mkdir(exist_ok=True)
  for old in directory.iterdir():
    old.unlink()
  if data[0] & 1:
    index, _, shard = data[1:].partition(b"\0")
    (directory / safetensors_source.SafetensorsSource.INDEX).write_bytes(index)
    (directory / "model-00001-of-00001.safetensors").write_bytes(shard)
  else:
    (directory / "model.safetensors").write_bytes(data[1:])
  try:
    source = sources.open_checkpoint(directory)
    for name in source.names():
      assert tuple(source.load(name).shape) == source.shape(name), name
  except sources.CheckpointError:
    pass


def recipe(data: bytes) -> None:
  """A recipe string: parsed, and its canonical name parses back to the same recipe."""
  text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
  try:
    parsed = recipes.parse(text)
  except recipes.UnknownRecipeError:
    return
  assert recipes.parse(parsed.name) == parsed, (text, parsed)


TARGETS = {"gguf": gguf, "safetensors": safetensors, "recipe": recipe}
# The only errors each target lets through; everything else is a finding.
DOCUMENTED = {"gguf": "GGUFError", "safetensors": "CheckpointError",
              "recipe": "UnknownRecipeError"}
assert validate  # instrumented above: the GGUF and safetensors checks are what is fuzzed


def main() -> None:
  target = sys.argv.pop(1)
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  atheris.Setup(sys.argv, TARGETS[target])
  atheris.Fuzz()


if __name__ == "__main__":
  main()
