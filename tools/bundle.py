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
                            f"Bundle formats: {', '.join(bundle.FORMATS)}.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", ".", "Where to write the bundles.")


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
  bundled = bundle.bundle_tokenizer(tok, s.weights.path, sentencepiece="task" in formats)
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
