"""Random weights, the one way the zoo makes them: a seeded transformers checkpoint of a config
(safetensors, written by transformers' own save_pretrained) with a SentencePiece tokenizer of the
config's vocabulary size, written once under the cache root and reused.

So `--variant=tiny` means the same weights in every tool, the original model loads from the same
files as the re-authored one, and the runtimes (LiteRT-LM, MediaPipe, llama.cpp) get a tokenizer
they can carry exactly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import pathlib
import shutil
import string
from typing import TYPE_CHECKING, Any, Callable, Mapping

from litezoo.artifacts import files

if TYPE_CHECKING:
  from torch import nn

_READY = ".complete"


def random_model(config: Mapping[str, Any], seed: int = 0) -> nn.Module:
  """transformers' model of `config` with its own seeded initialisation; norm weights (which
  start at exactly 1 or 0) are perturbed so that a swapped norm shows up in verification."""
  # pylint: disable=g-import-not-at-top
  import torch
  import transformers
  torch.manual_seed(seed)
  hf_config = transformers.AutoConfig.for_model(**config)
  model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "norm" in name:
        param.add_(torch.randn_like(param) * 0.1)
  return model.eval()


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
  model.normalizer_spec.remove_extra_whitespaces = False  # as the Hugging Face form does
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
  """tokenizer.model (SentencePiece: llama.cpp, MediaPipe) and the same vocabulary as
  tokenizer.json (Hugging Face: transformers, LiteRT-LM); both put BOS (<s>, id 1) first."""
  # pylint: disable=g-import-not-at-top
  import sentencepiece
  import transformers
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
  proto = sentencepiece_model(vocab_size)
  (directory / "tokenizer.model").write_bytes(proto)
  sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
  vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
  tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
  tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
  tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
  # BOS before every text, as Llama's and Gemma's SentencePiece tokenizers do.
  tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                     special_tokens=[("<s>", 1)])
  transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
      eos_token="</s>").save_pretrained(directory)


def identity(config: Mapping[str, Any], seed: int) -> dict:
  """What makes a random checkpoint: the config and the seed (transformers and torch are pinned
  by the lock file, which every cache key also covers)."""
  digest = hashlib.sha256(json.dumps([dict(config), seed], sort_keys=True).encode()).hexdigest()
  return {"kind": "random", "seed": seed, "config_sha256": digest}


def checkpoint(name: str, config: Mapping[str, Any], seed: int = 0,
               log: Callable[[str], None] = print) -> pathlib.Path:
  """The random checkpoint of `config` under `seed`, written on first use (a 1.1B model takes
  4.4 GB in float32): `<cache>/random/<name>-s<seed>-<config hash>/`."""
  tag = identity(config, seed)["config_sha256"][:16]
  directory = files.cache_root() / "random" / f"{name}-s{seed}-{tag}"
  if (directory / _READY).exists():
    return directory
  directory.parent.mkdir(parents=True, exist_ok=True)
  with files.locked(directory.parent / f".{directory.name}.lock"):
    if (directory / _READY).exists():  # another process wrote it while this one waited
      return directory
    log(f"writing random weights for {name} (seed {seed}) with transformers to {directory}")
    scratch = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    model = random_model(config, seed)
    model.save_pretrained(scratch, safe_serialization=True)
    del model
    vocab_size = int(config["vocab_size"])
    write_tokenizer(scratch, vocab_size)
    # transformers loads a tokenizer by the config's model_type, and some (Qwen2's) add special
    # tokens of their own: shrink the pieces so the loaded tokenizer fits the model's logits.
    import transformers  # pylint: disable=g-import-not-at-top
    added = len(transformers.AutoTokenizer.from_pretrained(scratch)) - vocab_size
    if added > 0:
      write_tokenizer(scratch, vocab_size - added)
    (scratch / _READY).write_text("complete\n")
    shutil.rmtree(directory, ignore_errors=True)
    scratch.rename(directory)
  return directory
