"""Bundles of a converted model for Google's runtimes: a MediaPipe `.task` and a LiteRT-LM
`.litertlm`, each carrying the `.tflite`, the model's tokenizer and its LLM metadata (start and
stop tokens, chat template or prompt affixes).

Bundles are byte-for-byte deterministic (fixed zip entry times, no uuid or creation time from the
clock) and written atomically. The LiteRT-LM engine reads where each KV cache holds the sequence
(the zoo's transposed layout: axis 2 of K, axis 3 of V) from the executor metadata written here:
without it the engine guesses the cache length from the wrong axis.
"""

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import tempfile
import uuid
import zipfile
from typing import Callable

from litezoo.core import artifacts, tokenizer as tokenizer_lib
from litezoo.core.errors import ZooError
from litezoo.core.spec import ModelSpec

FORMATS = ("task", "litertlm")
# Hugging Face model_type -> LiteRT-LM's model type (what it special-cases); the rest are generic.
_LITERTLM_MODEL_TYPES = {"gemma3": "gemma3", "gemma3_text": "gemma3", "qwen3": "qwen3",
                         "qwen2": "qwen2p5"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
# The runtimes insist on a stop token; the byte tokenizer has none, so the NUL byte (which text
# does not hold) stands in: generation with the byte variants stops only at NUL or the length.
BYTE_STOP_ID = 0
# LiteRT-LM hands templates each message's content as a list of parts ({"type": "text", ...}),
# Hugging Face templates expect a string: this prefix joins the parts before the template runs.
ENGINE_CONTENT_AS_TEXT = (
    "{%- set ns = namespace(messages=[]) -%}{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set ns.messages = ns.messages + [m] -%}{%- else -%}"
    "{%- set ns.messages = ns.messages + [{'role': m['role'], 'content': m['content'] | "
    "map(attribute='text') | join('')}] -%}{%- endif -%}{%- endfor -%}"
    "{%- set messages = ns.messages -%}")
# tokenizer.ByteTokenizer.chat_text as jinja, so the LiteRT-LM engine renders chats the same way.
BYTE_CHAT_TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                      "{% if add_generation_prompt %}<assistant>{% endif %}")


class BundleError(ZooError, ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class PromptAffixes:
  """What the runtimes put around each turn when they apply a chat format themselves."""

  user_prefix: str
  user_suffix: str
  model_prefix: str
  model_suffix: str


@dataclasses.dataclass(frozen=True)
class BundleTokenizer:
  """A model's tokenizer in the forms the runtimes read, with its special tokens."""

  tokenizer_json: str  # Hugging Face tokenizers JSON (LiteRT-LM)
  sentencepiece: bytes | None  # serialized SentencePiece ModelProto (MediaPipe), if asked for
  vocab_size: int
  start_id: int | None  # the BOS the zoo puts before text, if any
  start_text: str  # MediaPipe needs a start token even when the model has none
  stop_ids: tuple[int, ...]
  stop_texts: tuple[str, ...]
  chat_template: str | None  # jinja, as the checkpoint ships it
  affixes: PromptAffixes | None


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's printable stand-ins for bytes, the alphabet of byte-level BPE vocabularies."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
               list(range(ord("®"), ord("ÿ") + 1)))
  chars, extra = {}, 0
  for b in range(256):
    if b in printable:
      chars[b] = chr(b)
    else:
      chars[b] = chr(256 + extra)
      extra += 1
  return chars


def byte_tokenizer_json() -> str:
  """A byte-level BPE without merges: token id = UTF-8 byte, like tokenizer.ByteTokenizer."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  chars = _bytes_to_unicode()
  tok = Tokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tok.decoder = decoders.ByteLevel()
  return tok.to_str()


def byte_sentencepiece() -> bytes:
  """A SentencePiece model whose ids are the bytes of ASCII text.

  SentencePiece cannot be a pure byte tokenizer of 256 ids: byte fallback needs 256 byte pieces
  plus an unknown piece. So id 0 is `<unk>`, ids 1-127 are the ASCII characters and ids 128-255
  are unused placeholders: ASCII text encodes exactly as with tokenizer.ByteTokenizer, other text
  to `<unk>`. (The .litertlm carries an exact byte tokenizer.)
  """
  from sentencepiece import sentencepiece_model_pb2 as spm  # pylint: disable=g-import-not-at-top
  piece = spm.ModelProto.SentencePiece
  model = spm.ModelProto()
  model.trainer_spec.model_type = spm.TrainerSpec.BPE
  model.trainer_spec.vocab_size = 256
  model.trainer_spec.unk_id, model.trainer_spec.bos_id = 0, -1
  model.trainer_spec.eos_id, model.trainer_spec.pad_id = -1, -1
  model.normalizer_spec.name = "identity"
  model.normalizer_spec.add_dummy_prefix = False
  model.normalizer_spec.remove_extra_whitespaces = False
  model.normalizer_spec.escape_whitespaces = False
  model.pieces.add(piece="<unk>", score=0, type=piece.UNKNOWN)
  for b in range(1, 128):
    model.pieces.add(piece=chr(b), score=0, type=piece.NORMAL)
  for b in range(128, 256):
    model.pieces.add(piece=f"<0x{b:02X}>", score=0, type=piece.UNUSED)
  return model.SerializeToString()


def _sentencepiece_of(tok: tokenizer_lib.HFTokenizer, checkpoint: pathlib.Path) -> bytes:
  """The checkpoint's own SentencePiece model if it ships one, else Google's conversion of the
  Hugging Face tokenizer (litert-torch's tokenizer_to_sentencepiece, a heuristic)."""
  shipped = checkpoint / "tokenizer.model" if checkpoint.is_dir() else None
  if shipped is not None and shipped.exists():
    return shipped.read_bytes()
  from litert_torch.generative.tools import tokenizer_to_sentencepiece_lib  # pylint: disable=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2 as spm  # pylint: disable=g-import-not-at-top
  model = spm.ModelProto()
  model.ParseFromString(
      tokenizer_to_sentencepiece_lib.convert(tok.backend, normalize_tokens="decode"))
  # A token that decodes to NUL (GPT-2's byte 0) makes a piece SentencePiece refuses to load:
  # keep its vocabulary spelling, unused, so every id keeps its place.
  vocab = {i: t for t, i in tok.backend.get_vocab().items()}
  for i, piece in enumerate(model.pieces):
    if not piece.piece or "\x00" in piece.piece:
      piece.piece, piece.type = vocab[i], spm.ModelProto.SentencePiece.UNUSED
  return model.SerializeToString()


def derive_affixes(chat_text: Callable[[list[dict]], str]) -> PromptAffixes | None:
  """Per-turn prefixes and suffixes, read off renders of the chat template.

  Turn ends are taken to end a line (true of ChatML, Gemma and the byte chat); the result is
  checked by rebuilding a two-turn render from it, and None is returned if that fails.
  """
  u1, a1, u2 = "\x01first", "\x02reply", "\x03second"
  try:
    one = chat_text([{"role": "user", "content": u1}])
    two = chat_text([{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
                     {"role": "user", "content": u2}])
  except (ZooError, ValueError, TypeError, KeyError):
    return None
  if one.count(u1) != 1 or two.count(a1) != 1 or two.count(u2) != 1:
    return None
  head, tail = one.split(u1)
  between = two[two.index(a1) + len(a1):two.index(u2)]
  common = os.path.commonprefix([tail, between])
  turn_end = common[:common.rfind("\n") + 1]
  affixes = PromptAffixes(user_prefix=between[len(turn_end):], user_suffix=turn_end,
                          model_prefix=tail[len(turn_end):], model_suffix=turn_end)
  if not head.endswith(affixes.user_prefix):
    return None
  start = head[:len(head) - len(affixes.user_prefix)]

  def turn(prefix, text, suffix):
    return prefix + text + suffix

  rebuilt = (start + turn(affixes.user_prefix, u1, affixes.user_suffix) +
             turn(affixes.model_prefix, a1, affixes.model_suffix) +
             turn(affixes.user_prefix, u2, affixes.user_suffix) + affixes.model_prefix)
  return affixes if rebuilt == two else None


def bundle_tokenizer(checkpoint: pathlib.Path | None,
                     sentencepiece: bool = True) -> BundleTokenizer:
  """The tokenizer of `checkpoint` (GGUF file or HF directory), or the byte tokenizer of the
  synthetic variants when it is None. The SentencePiece form (only .task needs it) takes seconds
  to convert for big vocabularies: `sentencepiece=False` skips it."""
  if checkpoint is None:
    tok = tokenizer_lib.ByteTokenizer()
    return BundleTokenizer(
        tokenizer_json=byte_tokenizer_json(),
        sentencepiece=byte_sentencepiece() if sentencepiece else None,
        vocab_size=tok.vocab_size, start_id=None, start_text="<unk>", stop_ids=(BYTE_STOP_ID,),
        stop_texts=("<unk>",), chat_template=BYTE_CHAT_TEMPLATE,
        affixes=derive_affixes(tok.chat_text))
  tok = tokenizer_lib.load(checkpoint)
  stop_ids = tuple(sorted(tok.stop_ids))
  bos_text = tok.token_text(tok.bos_id) if tok.bos_id is not None else None
  if bos_text is None and not stop_ids:
    raise BundleError(f"the tokenizer of {checkpoint} has neither a BOS nor an EOS token")
  return BundleTokenizer(
      tokenizer_json=tok.backend.backend_tokenizer.to_str(),
      sentencepiece=_sentencepiece_of(tok, checkpoint) if sentencepiece else None,
      vocab_size=tok.vocab_size,
      start_id=tok.bos_id if tok.adds_bos else None,
      start_text=bos_text or tok.token_text(stop_ids[0]),
      stop_ids=stop_ids,
      stop_texts=tuple(tok.token_text(i) for i in stop_ids),
      chat_template=tok.chat_template,
      affixes=derive_affixes(tok.chat_text) if tok.chat_template else None)


@dataclasses.dataclass(frozen=True)
class _Model:
  """What the bundles need to know about the .tflite."""

  stem: str  # <model>-<variant>_<recipe tag>
  vocab_size: int
  kv_cache_max_len: int
  cache_names: tuple[str, ...]  # kv_cache_k_<i> / kv_cache_v_<i>, as the signatures name them
  sequence_axes: dict[str, int]  # where each cache holds its positions


def _inspect(spec: ModelSpec, variant: str, tflite: pathlib.Path) -> _Model:
  if not tflite.is_file():
    raise BundleError(f"no converted model at {tflite}: convert it first (bazel run "
                      f"//tools:convert -- --model={spec.name} --variant={variant})")
  prefix = f"{spec.name}-{variant}_"
  stem = re.sub(r"_ekv\d+$", "", tflite.stem)
  if not stem.startswith(prefix) or tflite.suffix != ".tflite":
    raise BundleError(f"{tflite.name} is not a conversion of {spec.name}-{variant} (expected "
                      f"{prefix}<recipe>_ekv<N>.tflite)")
  from litezoo.core import convert  # pylint: disable=g-import-not-at-top
  try:
    signatures = convert.signature_details(tflite)
  except (ValueError, RuntimeError) as e:
    raise BundleError(f"{tflite} is not a readable .tflite ({e})") from e
  decode = signatures.get("decode")
  if decode is None or "logits" not in decode["outputs"]:
    raise BundleError(f"{tflite} has no decode signature with logits: not a zoo LLM")
  caches = tuple(sorted(n for n in decode["inputs"] if n.startswith("kv_cache_")))
  if not caches:
    raise BundleError(f"{tflite} has no kv_cache_* inputs: not a zoo LLM")
  from litezoo.core.runner import kv_sequence_axes  # pylint: disable=g-import-not-at-top
  shape = lambda name: decode["inputs"][name]["shape"]
  axes = {}
  for k_name in (n for n in caches if n.startswith("kv_cache_k_")):
    v_name = k_name.replace("_k_", "_v_")
    axes[k_name], axes[v_name] = kv_sequence_axes(shape(k_name), shape(v_name))
  return _Model(stem=stem, vocab_size=decode["outputs"]["logits"]["shape"][-1],
                kv_cache_max_len=shape(caches[0])[axes[caches[0]]], cache_names=caches,
                sequence_axes=axes)


def _task(model: _Model, tflite: pathlib.Path, tok: BundleTokenizer, final: pathlib.Path,
          scratch: pathlib.Path) -> None:
  """MediaPipe's bundler writes the entries (and the metadata, from its C library); they are
  copied into a zip with fixed times so the same inputs give the same bytes."""
  from mediapipe.tasks.python.genai import bundler  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils as mab  # pylint: disable=g-import-not-at-top
  sp_path = scratch / "tokenizer.model"
  sp_path.write_bytes(tok.sentencepiece)
  raw = scratch / "raw.task"
  affixes = tok.affixes
  config = bundler.BundleConfig(
      tflite_model=str(tflite), tokenizer_model=str(sp_path), start_token=tok.start_text,
      stop_tokens=list(tok.stop_texts) or [tok.start_text], output_filename=str(raw),
      prompt_prefix_user=affixes and affixes.user_prefix,
      prompt_suffix_user=affixes and affixes.user_suffix,
      prompt_prefix_model=affixes and affixes.model_prefix,
      prompt_suffix_model=affixes and affixes.model_suffix)
  try:
    bundler.create_bundle(config)
  except ValueError as e:
    raise BundleError(f"MediaPipe's bundler refused {model.stem}: {e}") from e
  with artifacts.atomic_path(final) as tmp:
    with zipfile.ZipFile(raw) as src, mab.AlignZipFile(tmp, "w", alignment=4) as dst:
      for info in src.infolist():
        entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
        entry.compress_type, entry.file_size = zipfile.ZIP_STORED, info.file_size
        entry.external_attr = 0o644 << 16
        with src.open(info) as reader, dst.open(entry, "w", force_zip64=True) as writer:
          shutil.copyfileobj(reader, writer, 1 << 24)


@contextlib.contextmanager
def _fixed_system_metadata(identity: str):
  """The LiteRT-LM builder stamps every file with a random uuid and the current time: derive
  both from the inputs instead."""
  import litert_lm_builder  # pylint: disable=g-import-not-at-top
  from litert_lm_builder import litertlm_builder as builder_module  # pylint: disable=g-import-not-at-top
  original = builder_module.populate_system_metadata

  def populate(system_metadata):
    kept = [m for m in system_metadata if m.key not in ("uuid", "creation_timestamp")]
    string = litert_lm_builder.DType.STRING
    return kept + [
        litert_lm_builder.Metadata("uuid", str(uuid.uuid5(uuid.NAMESPACE_OID, identity)), string),
        litert_lm_builder.Metadata("creation_timestamp", "1980-01-01T00:00:00+00:00", string)]

  builder_module.populate_system_metadata = populate
  try:
    yield
  finally:
    builder_module.populate_system_metadata = original


def _litertlm(spec: ModelSpec, variant: str, model: _Model, tflite: pathlib.Path,
              tok: BundleTokenizer, final: pathlib.Path, scratch: pathlib.Path) -> None:
  import litert_lm_builder as lb  # pylint: disable=g-import-not-at-top
  from litert_lm_builder.runtime.proto import executor_metadata_pb2, llm_metadata_pb2, sampler_params_pb2  # pylint: disable=g-import-not-at-top
  llm = llm_metadata_pb2.LlmMetadata()
  if tok.start_id is not None:
    llm.start_token.token_ids.ids.append(tok.start_id)
  for stop in tok.stop_ids:
    llm.stop_tokens.add().token_ids.ids.append(stop)
  if tok.affixes is not None:
    llm.prompt_templates.user.prefix = tok.affixes.user_prefix
    llm.prompt_templates.user.suffix = tok.affixes.user_suffix
    llm.prompt_templates.model.prefix = tok.affixes.model_prefix
    llm.prompt_templates.model.suffix = tok.affixes.model_suffix
  if tok.chat_template:
    llm.jinja_prompt_template = ENGINE_CONTENT_AS_TEXT + tok.chat_template
  llm.max_num_tokens = model.kv_cache_max_len
  # Greedy, as tools/generate; spelled top-k 1 since the CPU engine does not implement GREEDY.
  llm.sampler_params.type = sampler_params_pb2.SamplerParameters.TOP_K
  llm.sampler_params.k = 1
  model_type = _LITERTLM_MODEL_TYPES.get(spec.variant(variant).config.get("model_type"))
  getattr(llm.llm_model_type, model_type or "generic_model").SetInParent()
  llm.supports_thinking = False
  llm.supports_function_calling = False
  # The engine reads where each cache holds the sequence from here instead of guessing.
  executor = executor_metadata_pb2.ExecutorMetadata()
  for name in model.cache_names:
    kind = (executor_metadata_pb2.StateBuffer.TYPE_GLOBAL_KEY_CACHE if "_k_" in name else
            executor_metadata_pb2.StateBuffer.TYPE_GLOBAL_VALUE_CACHE)
    executor.llm_executor_metadata.state_buffers.add(
        prefill_input_name=name, prefill_output_name=name, decode_input_name=name,
        decode_output_name=name, type=kind, sequence_axis=model.sequence_axes[name])
  paths = {"llm": scratch / "llm_metadata.pb", "executor": scratch / "executor_metadata.pb",
           "tokenizer": scratch / "tokenizer.json"}
  paths["llm"].write_bytes(llm.SerializeToString())
  paths["executor"].write_bytes(executor.SerializeToString())
  paths["tokenizer"].write_text(tok.tokenizer_json)
  builder = lb.LitertLmFileBuilder()
  builder.add_system_metadata(lb.Metadata("Authors", "litezoo", lb.DType.STRING))
  builder.add_llm_metadata(str(paths["llm"]))
  builder.add_executor_metadata(str(paths["executor"]))
  builder.add_hf_tokenizer(str(paths["tokenizer"]))
  builder.add_tflite_model(str(tflite), lb.TfLiteModelType.PREFILL_DECODE)
  identity = hashlib.sha256(b"".join(p.read_bytes() for p in paths.values()) +
                            artifacts.sha256_file(tflite).encode()).hexdigest()
  with artifacts.atomic_path(final) as tmp, _fixed_system_metadata(identity):
    with open(tmp, "wb") as f:
      builder.build(f, validate_metadata=True)


def write_bundles(spec: ModelSpec, variant: str, tflite: pathlib.Path,
                  checkpoint: pathlib.Path | None, output_dir: pathlib.Path,
                  formats=("task", "litertlm"),
                  log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
  """Writes `<model>-<variant>_<recipe tag>.<format>` for each format into `output_dir`."""
  formats = tuple(formats)
  unknown = [f for f in formats if f not in FORMATS]
  if unknown or not formats:
    raise BundleError(f"unknown bundle format {', '.join(unknown) or '(none given)'}; formats: "
                      f"{', '.join(FORMATS)}")
  spec.variant(variant)
  tflite = pathlib.Path(tflite)
  if checkpoint is not None and not pathlib.Path(checkpoint).exists():
    raise BundleError(f"checkpoint {checkpoint} does not exist")
  model = _inspect(spec, variant, tflite)
  output_dir = artifacts.ensure_writable_dir(output_dir)
  log(f"reading the tokenizer of {checkpoint or 'the synthetic variant (bytes)'}")
  tok = bundle_tokenizer(pathlib.Path(checkpoint) if checkpoint is not None else None,
                         sentencepiece="task" in formats)
  # Padded embeddings (Phi-2: 51200 rows for 50295 tokens) are fine; more tokens than logits are not.
  if tok.vocab_size > model.vocab_size or tok.vocab_size < model.vocab_size * 0.9:
    raise BundleError(
        f"the tokenizer of {checkpoint} has {tok.vocab_size} tokens but {tflite.name} has "
        f"{model.vocab_size} logits: they belong to different models; pass the checkpoint the "
        "model was converted from")
  written = {}
  with tempfile.TemporaryDirectory(dir=output_dir, prefix=".bundle-") as scratch:
    for fmt in formats:
      final = output_dir / f"{model.stem}.{fmt}"
      log(f"writing {final.name}")
      if fmt == "task":
        _task(model, tflite, tok, final, pathlib.Path(scratch))
      else:
        _litertlm(spec, variant, model, tflite, tok, final, pathlib.Path(scratch))
      written[fmt] = final
  return written
