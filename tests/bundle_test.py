"""Bundles of a tiny converted model: both the .litertlm and the .task run in Google's LiteRT-LM
engine with the zoo's greedy text; both parse back with what they should carry; same inputs give
the same bytes; a bundle that could not be exact is refused with a clear error.

The model is tinyllama's `tiny` variant (random weights written by transformers, with a
SentencePiece tokenizer that puts BOS first, as Llama's does), and a local checkpoint of it whose
tokenizer carries a chat template.
"""

import hashlib
import json
import pathlib
import shutil
import tomllib
import zipfile
import zlib

import pytest

from litezoo import pipeline
from litezoo.artifacts import bundle, files
from litezoo.artifacts.manifest import Artifact
from litezoo.core import registry
from litezoo.runtime import generate, runner, tokenizer
from litezoo.sources import random_weights
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
# As the plugins ship, verify_<k> and decode windows beside prefill and decode: the suites'
# shared signatures (//tests:tinyllama_tiny_float holds them converted).
SIGNATURES = testing.TINY_SIGNATURES
# One fresh artifact cache for the module (autouse).
module_artifact_cache = testing.module_artifact_cache
PROMPTS = ["The quick brown fox", "zq", "Paris? London! Rome.", "0123456789abcdefghij"]
# BOS from the template, as Llama 3's and Gemma's templates write it: LiteRT-LM renders bos_token
# empty and puts the start token first, so both sides feed the same tokens.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  weights = pipeline.weights(SPEC, "tiny", log=lambda _: None)
  artifact = pipeline.artifact(SPEC, "tiny", weights, recipe="none", signatures=SIGNATURES,
                               log=lambda _: None)
  tok = pipeline.tokenizer(weights)
  bundles = bundle.write_bundles(artifact, tok, weights.path,
                                 tmp_path_factory.mktemp("bundles"), log=lambda _: None)
  return artifact, tok, weights, bundles


@pytest.fixture(scope="module")
def chat(tiny, tmp_path_factory):
  """The tiny model's checkpoint with a chat template in its tokenizer: the same weights, so the
  tiny artifact is its conversion."""
  artifact, _, weights, _ = tiny
  directory = tmp_path_factory.mktemp("chat") / "checkpoint"
  shutil.copytree(weights.path, directory)
  settings = json.loads((directory / "tokenizer_config.json").read_text())
  (directory / "tokenizer_config.json").write_text(
      json.dumps({**settings, "chat_template": CHAT_TEMPLATE}))
  tok = pipeline.tokenizer(pipeline.weights(SPEC, "tiny", directory))
  bundles = bundle.write_bundles(artifact, tok, directory, tmp_path_factory.mktemp("chat_out"),
                                 formats=("litertlm",), log=lambda _: None)
  return artifact, tok, bundles["litertlm"]


def _engine(path):
  """Google's engine on a bundle, with float32 activations as the zoo's runner (its CPU default
  is float16, which moves near-tied logits of random weights)."""
  import litert_lm  # pylint: disable=g-import-not-at-top
  return litert_lm.Engine(str(path), backend=litert_lm.interfaces.CPU(), cache_dir=":nocache",
                          activation_data_type=litert_lm.ActivationDataType.FLOAT32)


def _as_engine_text(tok, ids: list[int], fmt: str = "litertlm") -> str:
  # The engine prints special tokens with the Hugging Face tokenizer of a .litertlm; SentencePiece
  # (a .task) decodes them to nothing.
  return tok.backend.decode(ids, skip_special_tokens=fmt == "task")


def _zoo_greedy(artifact, tok, context: list[int], n: int) -> list[int]:
  return generate.Session(runner.Runner(artifact.path), tok.stop_ids).generate(context, n)[0]


def test_bundles_are_named_after_the_model_recipe_and_cache(tiny):
  """Named as convert names the .tflite (a trial: two bundles of one model with different
  --kv_cache_max_len overwrote each other in one directory)."""
  artifact, bundles = tiny[0], tiny[3]
  ekv = artifact.manifest.signatures.kv_cache_max_len
  assert {f: p.name for f, p in bundles.items()} == {
      "task": f"tinyllama-tiny_none_ekv{ekv}.task",
      "litertlm": f"tinyllama-tiny_none_ekv{ekv}.litertlm"}


@pytest.mark.parametrize("fmt", ["litertlm", "task"])
def test_engine_greedy_output_equals_the_zoo_runner(tiny, fmt):
  """The engine puts the bundle's start token (BOS) before the prompt, the zoo's tokenizer puts
  BOS first: both feed the model the same tokens and generate the same text."""
  import litert_lm  # pylint: disable=g-import-not-at-top
  artifact, tok, _, bundles = tiny
  engine = _engine(bundles[fmt])
  assert engine.bos_token_id == tok.bos_id == 1
  varied = 0
  for prompt in PROMPTS:
    assert [tok.bos_id] + engine.tokenize(prompt) == tok.encode(prompt)
    n = 24  # the prompt plus 24 tokens cross the 16-token prefill and run through decode
    # The .litertlm's own sampler (as `litert-lm run` samples: a TOP_K one failed there at the
    # first token); the .task's is the engine's default, so greedy is asked for.
    sampler = ({} if fmt == "litertlm" else
               {"sampler_config": litert_lm.SamplerConfig(top_k=1)})
    session = engine.create_session(apply_prompt_template=False, max_output_tokens=n, **sampler)
    session.run_prefill([prompt])
    text = session.run_decode().texts[0]
    expected = _zoo_greedy(artifact, tok, tok.encode(prompt), n)
    varied += len(set(expected)) > 3
    assert text == _as_engine_text(tok, expected, fmt)
  assert varied  # a varied reference somewhere: echoing one token could not pass


def test_engine_reads_the_stop_token(tiny):
  _, tok, _, bundles = tiny
  engine = _engine(bundles["litertlm"])
  assert engine.eos_token_ids == [[i] for i in sorted(tok.stop_ids)]


def test_engine_chat_renders_and_answers_like_the_zoo(chat):
  import litert_lm  # pylint: disable=g-import-not-at-top
  artifact, tok, path = chat
  message = {"role": "user", "content": "hi there"}
  conversation = _engine(path).create_conversation(max_output_tokens=12)  # the file's sampler
  assert "<s>" + conversation.render_message_to_string(message) == tok.chat_text([message])
  reply = conversation.send_message(message)["content"][0]["text"]
  assert reply == _as_engine_text(tok, _zoo_greedy(artifact, tok, tok.chat([message]), 12))


def test_task_parses_back_and_carries_the_checkpoints_own_sentencepiece(tiny):
  import sentencepiece  # pylint: disable=g-import-not-at-top
  artifact, tok, weights, bundles = tiny
  with zipfile.ZipFile(bundles["task"]) as task:
    assert task.namelist() == ["TF_LITE_PREFILL_DECODE", "TOKENIZER_MODEL", "METADATA"]
    assert task.read("TF_LITE_PREFILL_DECODE") == artifact.path.read_bytes()
    assert task.read("TOKENIZER_MODEL") == (weights.path / "tokenizer.model").read_bytes()
    sp = sentencepiece.SentencePieceProcessor()
    sp.LoadFromSerializedProto(task.read("TOKENIZER_MODEL"))
    metadata = task.read("METADATA")
    for info in task.infolist():
      assert info.date_time == (1980, 1, 1, 0, 0, 0) and info.compress_type == zipfile.ZIP_STORED
      # MediaPipe maps entries in place: each entry's data starts 4-byte aligned.
      assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 4 == 0
  text = "Say hi, twice"
  assert [1] + sp.encode(text) == tok.encode(text)
  assert b"<s>" in metadata and b"</s>" in metadata  # start and stop tokens, as text


def test_litertlm_parses_back(tiny, tmp_path):
  import litert_lm_builder  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from litert_lm_builder.runtime.proto import executor_metadata_pb2, llm_metadata_pb2  # pylint: disable=g-import-not-at-top
  artifact, tok, _, bundles = tiny
  toml = pathlib.Path(litert_lm_builder.litertlm_builder.unpack(str(bundles["litertlm"]),
                                                                str(tmp_path)))
  sections = {s["section_type"]: tmp_path / s["data_path"]
              for s in tomllib.loads(toml.read_text())["section"]}
  assert sections["TFLiteModel"].read_bytes() == artifact.path.read_bytes()
  packed = sections["HF_Tokenizer"].read_bytes()  # 8-byte size, then zlib
  assert zlib.decompress(packed[8:]).decode() == tok.backend.backend_tokenizer.to_str()
  llm = text_format.Parse(sections["LlmMetadata"].read_text(), llm_metadata_pb2.LlmMetadata())
  assert [list(t.token_ids.ids) for t in llm.stop_tokens] == [[i] for i in sorted(tok.stop_ids)]
  assert list(llm.start_token.token_ids.ids) == [1]
  assert llm.max_num_tokens == SIGNATURES.kv_cache_max_len
  executor = text_format.Parse(sections["ExecutorMetadata"].read_text(),
                               executor_metadata_pb2.ExecutorMetadata())
  buffers = executor.llm_executor_metadata.state_buffers
  layers = SPEC.variant("tiny").config["num_hidden_layers"]
  assert len(buffers) == 2 * layers
  # The transposed layout, read from the manifest: K [1, heads, seq, dim], V [1, heads, dim, seq]
  assert {(b.decode_input_name[:10], b.sequence_axis) for b in buffers} == {
      ("kv_cache_k", 2), ("kv_cache_v", 3)}


def test_bundles_are_deterministic(tiny, tmp_path):
  artifact, tok, weights, first = tiny
  again = bundle.write_bundles(artifact, tok, weights.path, tmp_path, log=lambda _: None)

  def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()

  assert {f: digest(p) for f, p in again.items()} == {f: digest(p) for f, p in first.items()}
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left


def test_chat_affixes_rebuild_the_chat_template(chat):
  _, tok, _ = chat
  assert bundle.derive_affixes(tok.chat_text) == bundle.PromptAffixes(
      "<user>", "\n", "<assistant>", "\n")
  assert bundle.derive_affixes(lambda messages: "no markers here") is None


def test_a_task_for_a_tokenizer_without_bos_is_refused_pointing_to_litertlm(tiny, tmp_path):
  """SmolLM2's tokenizer puts no BOS first; Google's runtimes would put the .task's start token
  before every prompt: a model fed a token the zoo never feeds it. The .litertlm is fine."""
  from litezoo.plugins.smollm2 import smollm2  # pylint: disable=g-import-not-at-top
  artifact, *_ = tiny
  weights = pipeline.weights(smollm2.SPEC, "135m")
  tok = pipeline.tokenizer(weights)
  assert not tok.adds_bos
  with pytest.raises(bundle.BundleError, match=r"start token before every prompt, and the "
                     r"tokenizer of .* starts text with none .* --format=litertlm"):
    bundle.write_bundles(artifact, tok, weights.path, tmp_path, formats=("task",))
  # The tool's default --format (every format) leaves the .task out and makes the .litertlm;
  # asked for by name, the .task is refused.
  from litezoo.tools import bundle as bundle_tool  # pylint: disable=g-import-not-at-top
  bundled, formats = bundle_tool.tokenizer_for(tok, weights.path, ["task", "litertlm"], False)
  assert formats == ["litertlm"] and bundled.sentencepiece is None and bundled.start_id is None
  with pytest.raises(bundle.BundleError, match="starts text with none"):
    bundle_tool.tokenizer_for(tok, weights.path, ["task", "litertlm"], True)


def test_a_tokenizer_sentencepiece_cannot_carry_exactly_is_refused_for_task(tiny):
  """A WordPiece-style vocabulary with BOS: its SentencePiece form (litert-torch's converter)
  does not encode the sample text the same way, so no .task."""
  _, tok, _, _ = tiny

  class Drifting:  # the tiny tokenizer, whose SentencePiece form is made to drop one piece
    def __getattr__(self, name):
      return getattr(tok, name)

  model = random_weights.sentencepiece_model(256)
  from sentencepiece import sentencepiece_model_pb2 as spm  # pylint: disable=g-import-not-at-top
  proto = spm.ModelProto()
  proto.ParseFromString(model)
  proto.pieces[70].type = spm.ModelProto.SentencePiece.UNUSED  # one letter it can no longer use
  mismatch = bundle._sentencepiece_mismatch(Drifting(), proto.SerializeToString(),  # pylint: disable=protected-access
                                            [bundle._SAMPLE])  # pylint: disable=protected-access
  assert mismatch is not None and "as SentencePiece (token" in mismatch


def test_unknown_format_names_the_valid_ones(tiny, tmp_path):
  artifact, tok, weights, _ = tiny
  with pytest.raises(bundle.BundleError, match="unknown bundle format zip; formats: task, litertlm"):
    bundle.write_bundles(artifact, tok, weights.path, tmp_path, formats=("zip",))


def test_a_tokenizer_of_another_size_is_refused(tiny, tmp_path):
  from tokenizers import Tokenizer, models  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  artifact = tiny[0]
  words = Tokenizer(models.WordLevel({"<unk>": 0, "<eos>": 1, "a": 2}, unk_token="<unk>"))
  transformers.PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<eos>",
                                       unk_token="<unk>").save_pretrained(tmp_path / "ckpt")
  with pytest.raises(bundle.BundleError, match="has 3 tokens but .* has 256 logits"):
    bundle.write_bundles(artifact, tokenizer.load(tmp_path / "ckpt"), tmp_path / "ckpt",
                         tmp_path / "out", formats=("litertlm",))


def test_holds_model_finds_the_tflite_in_each_bundle_and_nowhere_else(tiny, tmp_path):
  """release's describe step checks each bundle carries the release's .tflite byte for byte."""
  artifact, _, _, bundles = tiny
  for path in bundles.values():
    assert bundle.holds_model(path, artifact.path)
  other = tmp_path / "other.tflite"
  data = bytearray(artifact.path.read_bytes())
  data[-1] ^= 1  # the same model but one byte
  other.write_bytes(bytes(data))
  assert not any(bundle.holds_model(path, other) for path in bundles.values())
  (tmp_path / "junk.task").write_bytes(b"junk!")
  assert not bundle.holds_model(tmp_path / "junk.task", artifact.path)


def test_a_tflite_without_a_manifest_is_refused(tmp_path):
  (tmp_path / "x.tflite").write_bytes(b"TFL3")
  with pytest.raises(Exception, match=r"its manifest x\.manifest\.json is missing \(the zoo "
                     "writes one beside every .tflite it converts\\): copy it along"):
    Artifact.read(tmp_path / "x.tflite")
  (tmp_path / "x.manifest.json").write_text("{")
  with pytest.raises(Exception, match=r"manifest x\.manifest\.json is unreadable "
                     r"\(JSONDecodeError"):
    Artifact.read(tmp_path / "x.tflite")


@pytest.mark.parametrize("args, message", [
    (("--format=litertlm,litertlm",), "--format=litertlm,litertlm names a format twice: name each "
     "once"),
    (("--output_dir=",), "--output_dir is empty: give a directory (. for the current one), or "
     "leave the flag out"),
])
def test_tool_refuses_repeated_formats_and_an_empty_output_dir(args, message):
  result = testing.run_tool("bundle", "--model=tinyllama", "--variant=tiny", *args)
  assert testing.one_line_error(result, "bundle") == f"bundle: error: {message}"


def test_a_directory_where_a_bundle_goes_is_named_and_nothing_is_written(tiny, tmp_path):
  """Found by a trial: a traceback after the .task was already written beside it."""
  artifact, tok, weights, _ = tiny
  stem = artifact.path.stem
  (tmp_path / f"{stem}.litertlm").mkdir()
  with pytest.raises(files.OutputError, match=f"{stem}.litertlm is a directory, where the bundle "
                     "would go"):
    bundle.write_bundles(artifact, tok, weights.path, tmp_path, log=lambda _: None)
  assert [p.name for p in tmp_path.iterdir()] == [f"{stem}.litertlm"]


def test_a_different_bundle_of_the_same_name_is_replaced_and_said(tiny, tmp_path):
  """A trial: a bundle of other signatures (the name holds model, recipe and cache length only)
  was replaced silently. The same bundle written again says nothing."""
  artifact, tok, weights, _ = tiny
  said = []

  def write():
    said.clear()
    return bundle.write_bundles(artifact, tok, weights.path, tmp_path, formats=("litertlm",),
                                log=said.append)["litertlm"]

  path = write()
  first = path.read_bytes()
  assert write() == path and path.read_bytes() == first
  assert not [m for m in said if "replacing" in m]
  path.write_bytes(first[:-1] + bytes([first[-1] ^ 1]))  # another bundle of that name
  write()
  assert f"replacing {path}, which held a different bundle of that name" in said
  assert path.read_bytes() == first


def test_tool_refuses_an_unknown_format_before_converting():
  result = testing.run_tool("bundle", "--model=tinyllama", "--variant=tiny", "--format=zip")
  assert testing.one_line_error(result, "bundle") == (
      "bundle: error: unknown --format zip; formats: task, litertlm")
