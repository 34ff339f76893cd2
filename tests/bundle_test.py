"""Bundles of a tiny converted model: the .litertlm runs in Google's LiteRT-LM engine with the
zoo's greedy tokens; both bundles parse back with what they should carry; same inputs give the
same bytes; bad input gets a clear error.

The model is tinyllama's `tiny` variant (random weights, untied head, so greedy output varies
from token to token) with the byte tokenizer of the synthetic variants.
"""

import hashlib
import pathlib
import tomllib
import zipfile
import zlib

import pytest

from litezoo.artifacts import bundle
from litezoo.conversion import convert
from litezoo.runtime import generate, runner, tokenizer
from litezoo.core import registry
from litezoo.core.spec import Signatures
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
SIGNATURES = Signatures((8, 16), 64)
PROMPTS = ["The quick brown fox", "zq", "Paris? London! Rome.", "0123456789abcdefghij"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tiny")
  tflite = convert.convert(SPEC, "tiny", recipe="none", signatures=SIGNATURES,
                           output_dir=directory, log=lambda _: None).path
  bundles = bundle.write_bundles(SPEC, "tiny", tflite, None, directory / "bundles",
                                 log=lambda _: None)
  return tflite, bundles


@pytest.fixture(scope="module")
def engine(tiny):
  import litert_lm  # pylint: disable=g-import-not-at-top
  return litert_lm.Engine(str(tiny[1]["litertlm"]), backend=litert_lm.interfaces.CPU(),
                          cache_dir=":nocache")


def _zoo_greedy(tflite, context: list[int], n: int) -> list[int]:
  session = generate.Session(runner.Runner(tflite), {bundle.BYTE_STOP_ID})
  return session.generate(context, n)[0]


def _as_text(ids: list[int]) -> str:
  # The engine detokenizes bytes to text the same way: invalid UTF-8 becomes U+FFFD.
  return bytes(ids).decode("utf-8", errors="replace")


def test_bundles_are_named_after_the_model_and_recipe(tiny):
  _, bundles = tiny
  assert {f: p.name for f, p in bundles.items()} == {
      "task": "tinyllama-tiny_none.task", "litertlm": "tinyllama-tiny_none.litertlm"}


@pytest.mark.parametrize("prompt", PROMPTS)
def test_engine_greedy_output_equals_the_zoo_runner(tiny, engine, prompt):
  import litert_lm  # pylint: disable=g-import-not-at-top
  tflite, _ = tiny
  n = 24  # the prompt plus 24 tokens cross the 16-token prefill and run through decode
  session = engine.create_session(apply_prompt_template=False,
                                  sampler_config=litert_lm.SamplerConfig(top_k=1),
                                  max_output_tokens=n)
  session.run_prefill([prompt])
  text = session.run_decode().texts[0]
  expected = _zoo_greedy(tflite, list(prompt.encode()), n)
  assert len(set(expected)) > 3  # a varied reference: echoing one token could not pass
  assert text == _as_text(expected)


def test_engine_reads_the_tokenizer_and_stop_token(engine):
  text = "Hello, <user> 123\n"
  assert engine.tokenize(text) == list(text.encode())
  assert engine.eos_token_ids == [[bundle.BYTE_STOP_ID]]
  assert engine.bos_token_id is None  # the byte tokenizer puts nothing before text


def test_engine_chat_renders_and_answers_like_the_zoo(tiny, engine):
  import litert_lm  # pylint: disable=g-import-not-at-top
  tflite, _ = tiny
  message = {"role": "user", "content": "hi there"}
  conversation = engine.create_conversation(sampler_config=litert_lm.SamplerConfig(top_k=1),
                                            max_output_tokens=12)
  zoo_chat = tokenizer.ByteTokenizer()
  assert conversation.render_message_to_string(message) == zoo_chat.chat_text([message])
  reply = conversation.send_message(message)["content"][0]["text"]
  assert reply == _as_text(_zoo_greedy(tflite, zoo_chat.chat([message]), 12))


def test_task_parses_back(tiny):
  import sentencepiece  # pylint: disable=g-import-not-at-top
  tflite, bundles = tiny
  with zipfile.ZipFile(bundles["task"]) as task:
    assert task.namelist() == ["TF_LITE_PREFILL_DECODE", "TOKENIZER_MODEL", "METADATA"]
    assert task.read("TF_LITE_PREFILL_DECODE") == tflite.read_bytes()
    sp = sentencepiece.SentencePieceProcessor()
    sp.LoadFromSerializedProto(task.read("TOKENIZER_MODEL"))
    metadata = task.read("METADATA")
    for info in task.infolist():
      assert info.date_time == (1980, 1, 1, 0, 0, 0) and info.compress_type == zipfile.ZIP_STORED
      # MediaPipe maps entries in place: each entry's data starts 4-byte aligned.
      assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 4 == 0
  text = "Say <user>hi\n"
  assert sp.get_piece_size() == 256 and sp.encode(text) == tokenizer.ByteTokenizer().encode(text)
  # The metadata proto carries the stop token and the chat affixes as strings.
  for expected in (b"<unk>", b"<user>", b"<assistant>"):
    assert expected in metadata


def test_litertlm_parses_back(tiny, tmp_path):
  import litert_lm_builder  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from litert_lm_builder.runtime.proto import executor_metadata_pb2, llm_metadata_pb2  # pylint: disable=g-import-not-at-top
  tflite, bundles = tiny
  toml = pathlib.Path(litert_lm_builder.litertlm_builder.unpack(str(bundles["litertlm"]),
                                                                str(tmp_path)))
  sections = {s["section_type"]: tmp_path / s["data_path"]
              for s in tomllib.loads(toml.read_text())["section"]}
  assert sections["TFLiteModel"].read_bytes() == tflite.read_bytes()
  packed = sections["HF_Tokenizer"].read_bytes()  # 8-byte size, then zlib
  assert zlib.decompress(packed[8:]).decode() == bundle.byte_tokenizer_json()
  llm = text_format.Parse(sections["LlmMetadata"].read_text(), llm_metadata_pb2.LlmMetadata())
  assert [list(t.token_ids.ids) for t in llm.stop_tokens] == [[bundle.BYTE_STOP_ID]]
  assert llm.max_num_tokens == SIGNATURES.kv_cache_max_len
  assert llm.jinja_prompt_template.endswith(bundle.BYTE_CHAT_TEMPLATE)
  assert llm.prompt_templates.user.prefix == "<user>"
  executor = text_format.Parse(sections["ExecutorMetadata"].read_text(),
                               executor_metadata_pb2.ExecutorMetadata())
  buffers = executor.llm_executor_metadata.state_buffers
  layers = SPEC.variant("tiny").config["num_hidden_layers"]
  assert len(buffers) == 2 * layers
  # The transposed layout: K [1, heads, seq, dim], V [1, heads, dim, seq]
  assert {(b.decode_input_name[:10], b.sequence_axis) for b in buffers} == {
      ("kv_cache_k", 2), ("kv_cache_v", 3)}


def test_bundles_are_deterministic(tiny, tmp_path):
  tflite, first = tiny
  again = bundle.write_bundles(SPEC, "tiny", tflite, None, tmp_path, log=lambda _: None)

  def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()

  assert {f: digest(p) for f, p in again.items()} == {f: digest(p) for f, p in first.items()}
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left


def test_chat_affixes_rebuild_the_chat_template():
  affixes = bundle.derive_affixes(tokenizer.ByteTokenizer().chat_text)
  assert affixes == bundle.PromptAffixes("<user>", "\n", "<assistant>", "\n")
  assert bundle.derive_affixes(lambda messages: "no markers here") is None


def test_missing_tflite_is_an_error(tmp_path):
  with pytest.raises(bundle.BundleError, match="no converted model at .*convert it first"):
    bundle.write_bundles(SPEC, "tiny", tmp_path / "tinyllama-tiny_none_ekv64.tflite", None,
                         tmp_path)


def test_unknown_format_names_the_valid_ones(tiny, tmp_path):
  with pytest.raises(bundle.BundleError, match="unknown bundle format zip; formats: task, litertlm"):
    bundle.write_bundles(SPEC, "tiny", tiny[0], None, tmp_path, formats=("zip",))


def test_a_tflite_of_another_model_is_refused(tiny, tmp_path):
  other = tmp_path / "phi2-tiny_none_ekv64.tflite"
  other.write_bytes(tiny[0].read_bytes())
  with pytest.raises(bundle.BundleError, match="is not a conversion of tinyllama-tiny"):
    bundle.write_bundles(SPEC, "tiny", other, None, tmp_path)


def test_a_tokenizer_of_another_size_is_refused(tiny, tmp_path):
  from tokenizers import Tokenizer, models  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  words = Tokenizer(models.WordLevel({"<unk>": 0, "<eos>": 1, "a": 2}, unk_token="<unk>"))
  transformers.PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<eos>",
                                       unk_token="<unk>").save_pretrained(tmp_path / "ckpt")
  with pytest.raises(bundle.BundleError, match="has 3 tokens but .* has 256 logits"):
    bundle.write_bundles(SPEC, "tiny", tiny[0], tmp_path / "ckpt", tmp_path / "out")


def test_tool_refuses_an_unknown_format_before_converting():
  result = testing.run_tool("bundle", "--model=tinyllama", "--variant=tiny", "--format=zip")
  assert result.returncode == 2
  assert "unknown --format zip; formats: task, litertlm" in result.stderr
