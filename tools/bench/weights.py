"""One set of weights for every peer: a seeded random Hugging Face checkpoint (safetensors) of the
real size, with a SentencePiece tokenizer of the config's vocabulary size (speed does not depend on
weight values, and llama.cpp's converter and the bundles need a tokenizer)."""

import hashlib
import itertools
import json
import pathlib
import shutil
import string
from typing import Callable

from litezoo.core import checkpoint as checkpoint_lib, reference

_READY = "BENCH_CHECKPOINT_READY"


def sentencepiece_model(vocab_size: int) -> bytes:
  """A unigram SentencePiece model with exactly `vocab_size` pieces, built without training:
  <unk> <s> </s>, the printable ASCII characters, then made-up words."""
  from sentencepiece import sentencepiece_model_pb2 as spm  # pylint: disable=g-import-not-at-top
  piece = spm.ModelProto.SentencePiece
  model = spm.ModelProto()
  model.trainer_spec.model_type = spm.TrainerSpec.UNIGRAM
  model.trainer_spec.vocab_size = vocab_size
  model.trainer_spec.unk_id, model.trainer_spec.bos_id = 0, 1
  model.trainer_spec.eos_id, model.trainer_spec.pad_id = 2, -1
  model.normalizer_spec.name = "identity"
  model.normalizer_spec.add_dummy_prefix = True
  model.pieces.add(piece="<unk>", score=0, type=piece.UNKNOWN)
  model.pieces.add(piece="<s>", score=0, type=piece.CONTROL)
  model.pieces.add(piece="</s>", score=0, type=piece.CONTROL)
  for c in "\u2581" + string.ascii_letters + string.digits + string.punctuation:
    model.pieces.add(piece=c, score=-10.0, type=piece.NORMAL)
  words = ("\u2581" + "".join(w) for n in itertools.count(2)
           for w in itertools.product(string.ascii_lowercase, repeat=n))
  while len(model.pieces) < vocab_size:
    model.pieces.add(piece=next(words), score=-1.0 - len(model.pieces) * 1e-4, type=piece.NORMAL)
  if len(model.pieces) > vocab_size:
    raise ValueError(f"a vocabulary of {vocab_size} cannot hold the base pieces")
  return model.SerializeToString()


def write_tokenizer(directory: pathlib.Path, vocab_size: int) -> None:
  """tokenizer.model (SentencePiece, for llama.cpp) and the same vocabulary as tokenizer.json
  (Hugging Face, for transformers and the bundles)."""
  import sentencepiece  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  proto = sentencepiece_model(vocab_size)
  (directory / "tokenizer.model").write_bytes(proto)
  sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
  vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
  tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
  tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
  tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
  transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
      eos_token="</s>").save_pretrained(directory)


def bench_dir() -> pathlib.Path:
  return checkpoint_lib.cache_dir() / "bench"


def random_checkpoint(name: str, config: dict, seed: int = 0,
                      log: Callable[[str], None] = print) -> pathlib.Path:
  """The cached random checkpoint of `config` (written once: 4.4 GB for a 1.1B model in float32)."""
  tag = hashlib.sha256(json.dumps([config, seed], sort_keys=True).encode()).hexdigest()[:12]
  directory = bench_dir() / f"{name}-random{seed}-{tag}"
  if (directory / _READY).exists():
    return directory
  log(f"writing a random checkpoint of {name} (seed {seed}) to {directory}")
  scratch = directory.with_name(directory.name + ".partial")
  shutil.rmtree(scratch, ignore_errors=True)
  scratch.mkdir(parents=True)
  reference.write_random_checkpoint(config, scratch, seed=seed)
  write_tokenizer(scratch, int(config["vocab_size"]))
  (scratch / _READY).write_text("complete\n")
  shutil.rmtree(directory, ignore_errors=True)
  scratch.rename(directory)
  return directory

