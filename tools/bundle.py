"""Bundles a converted model for Google's runtimes: MediaPipe `.task` and LiteRT-LM `.litertlm`.

  bazel run //tools:bundle -- --model=smollm2 --format=litertlm --output_dir=out
  bazel run //tools:bundle -- --model=tinyllama --variant=tiny --output_dir=out

The .tflite comes from the artifact cache (converted on first use), the tokenizer from the
model's checkpoint.
"""

from absl import flags

from litezoo import pipeline
from litezoo.artifacts import bundle, files
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define()
_FORMAT = flags.DEFINE_list("format", list(bundle.FORMATS),
                            f"Bundle formats: {', '.join(bundle.FORMATS)} (default: each one the "
                            "model's tokenizer allows).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", ".", "Where to write the bundles.")


def tokenizer_for(tok, checkpoint, formats: list[str], asked: bool):
  """(bundle.BundleTokenizer, formats): with the default --format (`asked` False), a .task the
  tokenizer cannot be carried in (no BOS, no exact SentencePiece form) is left out with a log
  line instead of failing the .litertlm too; asked for, it raises bundle.BundleError."""
  try:
    return bundle.bundle_tokenizer(tok, checkpoint, sentencepiece="task" in formats), formats
  except bundle.BundleError as e:
    if asked or "task" not in formats:
      raise
    console.log(f"no .task (the default --format asks for one where it can be made): {e}")
    formats = [f for f in formats if f != "task"]
    return bundle.bundle_tokenizer(tok, checkpoint, sentencepiece=False), formats


def main(argv):
  del argv
  formats = [f.strip() for f in _FORMAT.value if f.strip()]
  if len(set(formats)) < len(formats):
    raise zoo_flags.FlagError(f"--format={','.join(formats)} names a format twice: name each once")
  unknown = [f for f in formats if f not in bundle.FORMATS]
  if unknown or not formats:  # checked before any conversion starts
    raise zoo_flags.FlagError(f"unknown --format {','.join(unknown) or '(empty)'}; formats: "
                              f"{', '.join(bundle.FORMATS)}")
  s = _SELECT.selection()
  output_dir = zoo_flags.output_dir(_OUTPUT_DIR)
  # The tokenizer is read and checked against the model's vocabulary in seconds, before the
  # minutes of converting.
  tok = pipeline.tokenizer(s.weights, console.log)
  bundled, formats = tokenizer_for(tok, s.weights.path, formats, zoo_flags.given("format"))
  vocab = s.spec.variant(s.variant).config.get("vocab_size")
  if vocab:
    bundle.check_vocab(bundled, vocab, s.weights.path, f"{s.spec.name}-{s.variant}")
  artifact = pipeline.artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                               signatures=s.signatures, log=console.log)
  written = bundle.write_bundles(artifact, tok, s.weights.path, output_dir, formats=formats,
                                 litertlm_type=s.spec.family.litertlm_type, log=console.log,
                                 bundled=bundled)
  for path in written.values():
    console.out(f"{path}  {path.stat().st_size / 2**20:.1f} MiB  sha256 "
                f"{files.sha256_file(path)}")
  return 0


if __name__ == "__main__":
  common.run(main)
