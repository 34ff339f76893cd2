"""Bundles of a converted model for Google's runtimes: a MediaPipe `.task` and a LiteRT-LM
`.litertlm`, each carrying the `.tflite`, the model's tokenizer and its LLM metadata (start and
stop tokens, chat template or prompt affixes).

Bundles are byte-for-byte deterministic (fixed zip entry times, no uuid or creation time from the
clock) and written atomically. The LiteRT-LM engine reads where each KV cache holds the sequence
(the zoo's transposed layout: axis 2 of K, axis 3 of V) from the executor metadata written here:
without it the engine guesses the cache length from the wrong axis.

A bundle declares exactly what the zoo feeds the model: a start token only where the zoo puts BOS
before text, the stop tokens of the checkpoint. A `.task` carries its tokenizer as SentencePiece:
where the checkpoint's tokenizer cannot be carried exactly that way (checked on a sample text),
the `.task` is refused and the `.litertlm`, which carries the tokenizer as is, is the way.
"""

import contextlib
import dataclasses
import filecmp
import hashlib
import mmap
import os
import pathlib
import shutil
import tempfile
import uuid
import zipfile
from typing import Callable

from litezoo.artifacts import files
from litezoo.artifacts.manifest import Artifact
from litezoo.core.errors import ZooError

FORMATS = ("task", "litertlm")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
# LiteRT-LM hands templates each message's content as a list of parts ({"type": "text", ...}),
# Hugging Face templates expect a string: this prefix joins the parts before the template runs.
ENGINE_CONTENT_AS_TEXT = (
    "{%- set ns = namespace(messages=[]) -%}{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set ns.messages = ns.messages + [m] -%}{%- else -%}"
    "{%- set ns.messages = ns.messages + [{'role': m['role'], 'content': m['content'] | "
    "map(attribute='text') | join('')}] -%}{%- endif -%}{%- endfor -%}"
    "{%- set messages = ns.messages -%}")
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
  start_text: str  # its text ("" where there is none)
  stop_ids: tuple[int, ...]
  stop_texts: tuple[str, ...]
  chat_template: str | None  # jinja, as the checkpoint ships it
  affixes: PromptAffixes | None


def _sentencepiece_of(tok, checkpoint: pathlib.Path) -> bytes:
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


# Text the SentencePiece form must encode exactly as the model's own tokenizer does.
_SAMPLE = ("The quick brown fox jumps over the lazy dog. 1234567890 -- \"Quoted\", (parens) & "
           "symbols: #$%*+/<=>@[]^_{|}~\n  Two spaces, a tab\there.\n"
           "Alice was beginning to get very tired of sitting by her sister on the bank.\n"
           "Caf\u00e9 na\u00efve \u00fcber \u2014 \u4e2d\u6587 \u65e5\u672c\u8a9e "
           "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \U0001f600")


def _sentencepiece_mismatch(tok, model: bytes, texts: list[str]) -> str | None:
  """Where the SentencePiece `model` encodes differently from `tok`, or None if it never does."""
  import sentencepiece  # pylint: disable=g-import-not-at-top
  sp = sentencepiece.SentencePieceProcessor(model_proto=model)
  for text in texts:
    ours = tok.encode_chat_text(text)
    if ours[:1] == [tok.bos_id] and tok.adds_bos:
      ours = ours[1:]
    theirs = sp.encode(text)
    if ours != theirs:
      at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                min(len(ours), len(theirs)))
      return (f"{text[:40]!r}... encodes to {ours[max(at - 1, 0):at + 3]} but to "
              f"{theirs[max(at - 1, 0):at + 3]} as SentencePiece (token {at})")
  return None


def bundle_tokenizer(tok, checkpoint: pathlib.Path, sentencepiece: bool = True) -> BundleTokenizer:
  """What the runtimes need of the model's tokenizer `tok` (runtime.tokenizer.HFTokenizer of
  `checkpoint`). With `sentencepiece`, also its SentencePiece form, checked exact on a sample
  and on chat renders; raises BundleError naming the first difference otherwise."""
  stop_ids = tuple(sorted(tok.stop_ids))
  if not stop_ids:
    raise BundleError(f"the tokenizer of {checkpoint} has no stop token (EOS or end of turn): "
                      "the runtimes need one to end a reply")
  affixes = derive_affixes(tok.chat_text) if tok.chat_template else None
  model = None
  if sentencepiece and not tok.adds_bos:
    raise BundleError(
        f"Google's runtimes put a .task's start token before every prompt, and the tokenizer of "
        f"{checkpoint} starts text with none (no BOS): the model would see a token the zoo never "
        "feeds it; bundle with --format=litertlm (the .litertlm declares no start token)")
  if sentencepiece:
    model = _sentencepiece_of(tok, checkpoint)
    texts = [_SAMPLE]
    if tok.chat_template:
      texts.append(tok.chat_text([{"role": "user", "content": "What is the capital of France?"}]))
    mismatch = _sentencepiece_mismatch(tok, model, texts)
    if mismatch:
      raise BundleError(
          f"a .task carries the tokenizer as SentencePiece, and {checkpoint}'s cannot be carried "
          f"exactly: {mismatch}; bundle with --format=litertlm (the .litertlm carries the "
          "tokenizer as is)")
  start_id = tok.bos_id if tok.adds_bos else None
  return BundleTokenizer(
      tokenizer_json=tok.backend.backend_tokenizer.to_str(),
      sentencepiece=model,
      vocab_size=tok.vocab_size,
      start_id=start_id,
      start_text=tok.token_text(start_id) if start_id is not None else "",
      stop_ids=stop_ids,
      stop_texts=tuple(tok.token_text(i) for i in stop_ids),
      chat_template=tok.chat_template,
      affixes=affixes)


def holds_model(bundle: pathlib.Path, tflite: pathlib.Path, digest: str | None = None) -> bool:
  """Whether the `.task` or `.litertlm` at `bundle` carries exactly the bytes of `tflite` (both
  store the model as is: a .task as a stored zip entry, a .litertlm as an aligned section).
  `digest`: tflite's sha256 when the caller has checked it already (else it is hashed here)."""
  size, digest = tflite.stat().st_size, digest or files.sha256_file(tflite)

  def same(read) -> bool:
    h = hashlib.sha256()
    left = size
    while left:
      block = read(min(left, 1 << 24))
      if not block:
        return False
      h.update(block)
      left -= len(block)
    return h.hexdigest() == digest

  if bundle.suffix == ".task":
    if not zipfile.is_zipfile(bundle):
      return False
    with zipfile.ZipFile(bundle) as archive:
      return any(info.file_size == size and same(archive.open(info).read)
                 for info in archive.infolist())
  with open(tflite, "rb") as f:
    head = f.read(64)
  with open(bundle, "rb") as f:
    if os.fstat(f.fileno()).st_size < size:
      return False
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
      start = data.find(head)
      while start >= 0:
        with memoryview(data)[start:start + size] as view:
          if len(view) == size and hashlib.sha256(view).hexdigest() == digest:
            return True
        start = data.find(head, start + 1)
  return False


def check_vocab(bundled: BundleTokenizer, logits: int, checkpoint: os.PathLike, model: str) -> None:
  """Raises BundleError when a tokenizer of `bundled.vocab_size` tokens cannot be the one of a
  model (named `model`) with `logits` outputs. Padded embeddings (Phi-2: 51200 rows for 50295
  tokens) are fine; more tokens than logits, or far fewer, are not."""
  if bundled.vocab_size > logits or bundled.vocab_size < logits * 0.9:
    raise BundleError(
        f"the tokenizer of {checkpoint} has {bundled.vocab_size} tokens but {model} has {logits} "
        "logits: they belong to different models; pass the checkpoint the model was converted "
        "from")


@dataclasses.dataclass(frozen=True)
class _Model:
  """What the bundles need to know about the .tflite, read from its manifest."""

  stem: str  # the .tflite's: <model>-<variant>_<recipe tag>_ekv<N>, so bundles of two caches differ
  model_type: str  # the HF config's model_type
  vocab_size: int
  kv_cache_max_len: int
  cache_names: tuple[str, ...]  # kv_cache_k_<i> / kv_cache_v_<i>, as the signatures name them
  sequence_axes: dict[str, int]  # where each cache holds its positions


def _inspect(artifact: Artifact) -> _Model:
  from litezoo.runtime.runner import kv_sequence_axis  # pylint: disable=g-import-not-at-top
  m = artifact.manifest
  decode = m.signature_details.get("decode")
  if decode is None or "logits" not in decode["outputs"]:
    raise BundleError(f"{artifact.path} has no decode signature with logits: not a zoo LLM")
  caches = tuple(sorted(n for n in decode["inputs"] if n.startswith("kv_cache_")))
  k_axis, v_axis = kv_sequence_axis(m.signatures.kv_layout)
  axes = {n: k_axis if n.startswith("kv_cache_k_") else v_axis for n in caches}
  return _Model(stem=artifact.path.stem,
                model_type=str(m.config.get("model_type", "")),
                vocab_size=decode["outputs"]["logits"]["shape"][-1],
                kv_cache_max_len=m.signatures.kv_cache_max_len, cache_names=caches,
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
      stop_tokens=list(tok.stop_texts), output_filename=str(raw),
      prompt_prefix_user=affixes and affixes.user_prefix,
      prompt_suffix_user=affixes and affixes.user_suffix,
      prompt_prefix_model=affixes and affixes.model_prefix,
      prompt_suffix_model=affixes and affixes.model_suffix)
  try:
    bundler.create_bundle(config)
  except ValueError as e:
    raise BundleError(f"MediaPipe's bundler refused {model.stem}: {e}") from e
  with files.atomic_path(final) as tmp:
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


def _litertlm(model: _Model, litertlm_type: str, tflite: pathlib.Path, tok: BundleTokenizer,
              final: pathlib.Path, scratch: pathlib.Path) -> None:
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
  # Greedy, as tools/generate. LiteRT-LM 0.18's CPU sampler implements TOP_P only (GREEDY and
  # TOP_K fail at the first token: "Sampler type: 1 not implemented yet" in `litert-lm run`, which
  # samples as the file says), so greedy is spelled as its Python API spells it: top-p with k=1.
  llm.sampler_params.type = sampler_params_pb2.SamplerParameters.TOP_P
  llm.sampler_params.k = 1
  llm.sampler_params.p = 1.0
  llm.sampler_params.temperature = 1.0
  getattr(llm.llm_model_type, litertlm_type).SetInParent()
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
                            files.sha256_file(tflite).encode()).hexdigest()
  with files.atomic_path(final) as tmp, _fixed_system_metadata(identity):
    with open(tmp, "wb") as f:
      builder.build(f, validate_metadata=True)


def write_bundles(artifact: Artifact, tok, checkpoint: pathlib.Path, output_dir: pathlib.Path,
                  formats=FORMATS, litertlm_type: str = "generic_model",
                  log: Callable[[str], None] = print,
                  bundled: BundleTokenizer | None = None) -> dict[str, pathlib.Path]:
  """Writes `<model>-<variant>_<recipe tag>.<format>` for each format into `output_dir`.

  `tok` is the tokenizer of `checkpoint` (the weights the artifact was converted from);
  `litertlm_type` is the family's LiteRT-LM model type; `bundled` is `bundle_tokenizer`'s result
  for them if the caller made it already (to check it before converting). Raises BundleError
  naming the problem (unknown format, a tokenizer that does not fit the model, a .task that could
  not be exact).
  """
  formats = tuple(formats)
  unknown = [f for f in formats if f not in FORMATS]
  if unknown or not formats:
    raise BundleError(f"unknown bundle format {', '.join(unknown) or '(none given)'}; formats: "
                      f"{', '.join(FORMATS)}")
  model = _inspect(artifact)
  output_dir = files.ensure_writable_dir(output_dir)
  if bundled is None:
    log(f"reading the tokenizer of {checkpoint}")
    bundled = bundle_tokenizer(tok, pathlib.Path(checkpoint), sentencepiece="task" in formats)
  check_vocab(bundled, model.vocab_size, checkpoint, artifact.path.name)
  finals = {fmt: output_dir / f"{model.stem}.{fmt}" for fmt in formats}
  for final in finals.values():
    if final.is_dir():
      raise files.OutputError(f"{final} is a directory, where the bundle would go: move it away "
                              "or choose another output directory")
  # Every format is written in the scratch first and moved into place only once all are done:
  # an error or Ctrl-C leaves none of them, not a .task without its .litertlm.
  with tempfile.TemporaryDirectory(dir=output_dir, prefix=".bundle-") as scratch:
    scratch = pathlib.Path(scratch)
    for fmt, final in finals.items():
      log(f"writing {final.name}")
      if fmt == "task":
        _task(model, artifact.path, bundled, scratch / final.name, scratch)
      else:
        _litertlm(model, litertlm_type, artifact.path, bundled, scratch / final.name, scratch)
    for final in finals.values():
      if final.exists() and not filecmp.cmp(final, scratch / final.name, shallow=False):
        # The name holds model, recipe and cache length: other signatures or weights share it.
        log(f"replacing {final}, which held a different bundle of that name")
      os.replace(scratch / final.name, final)
  return finals
