"""The float export in two groups (two processes, or one after the other) and their merge
(conversion/merge.py) against one conversion of every signature: the same outputs, bit for bit,
through LiteRT's interpreter, each weight stored once, the same bytes whichever way it ran."""

import json
import os
import pathlib
import time

import numpy as np
import pytest

from litezoo import pipeline
from litezoo.conversion import compact, export, merge
from litezoo.core import registry
from litezoo.core.spec import Signatures
from litezoo.quant import recipes
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
# prefill_8, verify_4, decode, decode_w16, w16_prefill_8: five, split three and two
SIGNATURES = Signatures((8,), 32, verify_lengths=(4,), decode_windows=(16,),
                        prefill_windows=(16,))


@pytest.fixture(scope="module")
def model():
  weights = pipeline.weights(SPEC, "tiny", log=lambda _: None)
  return testing.load(SPEC, SPEC.variant("tiny").config, weights.path,
                      SIGNATURES.kv_cache_max_len)


@pytest.fixture(scope="module")
def whole(model, tmp_path_factory):
  """One conversion of every signature, as before the split (_SPLIT_FROM above their count)."""
  path = tmp_path_factory.mktemp("whole") / "m.tflite"
  split = export._SPLIT_FROM  # pylint: disable=protected-access
  export._SPLIT_FROM = 99  # pylint: disable=protected-access
  try:
    assert export.export_float(model, SIGNATURES, str(path)) == {"export_processes": 1}
  finally:
    export._SPLIT_FROM = split  # pylint: disable=protected-access
  return path


@pytest.fixture(scope="module")
def split(model, whole, tmp_path_factory):
  """export_float's own split, in this process (which has lowered a model already, `whole`, so
  the groups convert one after the other): the merged file and copies of its two parts."""
  del whole  # converted first, for that reason
  out, parts = tmp_path_factory.mktemp("split"), []

  def keep(first, second, merged_path):  # the two groups' files, then the merge as usual
    for part in (first, second):
      parts.append(out / f"part{len(parts)}.tflite")
      parts[-1].write_bytes(part.read_bytes())
    merge_file(first, second, merged_path)

  merge_file = merge.merge
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(merge, "merge", keep)
    info = export.export_float(model, SIGNATURES, str(out / "serial.tflite"))
  assert info == {"export_processes": 1} and len(parts) == 2
  return out / "serial.tflite", parts


def _outputs(path: pathlib.Path) -> dict:
  from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
  run = interpreter.Interpreter(model_path=str(path))
  found = {}
  for name in run.get_signature_list():
    runner = run.get_signature_runner(name)
    rng = np.random.default_rng(0)
    feeds = {}
    for key, d in sorted(runner.get_input_details().items()):
      if key == "input_pos":
        feeds[key] = np.arange(d["shape"][0], dtype=np.int32) + 3
      elif key == "tokens":
        feeds[key] = rng.integers(0, 200, d["shape"]).astype(np.int32)
      else:  # a KV cache already holding something
        feeds[key] = rng.standard_normal(d["shape"]).astype(np.float32)
    found[name] = runner(**feeds)
  return found


def _stored_bytes(path: pathlib.Path) -> int:
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  raw = path.read_bytes()
  m = schema.Model.GetRootAs(raw, 0)
  return sum(m.Buffers(i).DataLength() + m.Buffers(i).Size() for i in range(m.BuffersLength()))


def test_two_groups_give_the_outputs_of_one_conversion(model, whole, split, tmp_path):
  # A fresh process (convert) splits its first export across two processes where it can; this
  # one has lowered a model already (`whole`), so it converts the two groups in turn.
  flags = ["--model=tinyllama", "--variant=tiny", "--quantize=none", "--prefill_seq_lens=8",
           "--kv_cache_max_len=32", "--verify_lengths=4", "--decode_windows=16",
           "--prefill_windows=16", "--verify_windows=none", f"--output_dir={tmp_path / 'out'}"]
  run = testing.run_tool("convert", *flags, env={"LITEZOO_CACHE": str(tmp_path / "cache")})
  assert run.returncode == 0, run.stderr[-3000:]
  parallel = next((tmp_path / "out").glob("*.tflite"))
  conversion = json.loads(parallel.with_name(
      parallel.name.replace(".tflite", ".manifest.json")).read_text())["conversion"]
  if len(os.sched_getaffinity(0)) >= 2:
    assert conversion["export_processes"] == 2 and conversion["export_child_peak_rss_bytes"] > 0
    # The done line gives the second process's memory too: a machine needs both.
    child = conversion["export_child_peak_rss_bytes"] / 2**30
    assert f"in two processes (the second's peak RSS {child:.2f} GiB)" in run.stderr
  serial = split[0]
  assert parallel.read_bytes() == serial.read_bytes()  # the same file however it ran
  assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]

  expected, found = _outputs(whole), _outputs(parallel)
  assert list(found) == list(expected)  # the same signatures, in the same order
  for name, outputs in expected.items():
    assert outputs.keys() == found[name].keys()
    for key, value in outputs.items():
      np.testing.assert_array_equal(found[name][key], value, err_msg=f"{name} {key}")
  # Each weight once: the merge adds only what the first group's file lacks (no weight).
  assert _stored_bytes(parallel) <= _stored_bytes(whole) * 1.01
  # The quantizer takes the merged file (it needs tensor names unique across subgraphs) and
  # quantizes it to what it makes of the one conversion.
  recipe = recipes.resolve("dynamic_int8", model.config.lm_head_share_weight_with_embedding)
  quantized = []
  for path in (whole, serial):
    quantized.append(tmp_path / f"{path.stem}.int8.tflite")
    quantized[-1].write_bytes(export.quantize_file(str(path), recipe))
  expected, found = _outputs(quantized[0]), _outputs(quantized[1])
  for name, outputs in expected.items():
    for key, value in outputs.items():
      np.testing.assert_array_equal(found[name][key], value, err_msg=f"int8 {name} {key}")


def test_a_stuck_second_process_is_stopped():
  """A child past its deadline is killed and reaped; the parent then converts its group."""
  pid = os.fork()
  if pid == 0:
    time.sleep(60)
    os._exit(0)  # pylint: disable=protected-access
  start = time.monotonic()
  assert export._wait(pid, deadline=start + 0.5) == (None, None)  # pylint: disable=protected-access
  assert time.monotonic() - start < 5
  with pytest.raises(ChildProcessError):
    os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left


@pytest.mark.parametrize("forked", [False, True])
def test_an_interrupted_merge_leaves_no_part_behind(forked, tmp_path, monkeypatch):
  """export_float's split (`_in_two`) with groups whose conversion writes a part, in one process
  or two: Ctrl-C at the merge leaves neither part, nor the child's error file."""
  def interrupted(first, second, _):
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    raise KeyboardInterrupt

  def convert(group, out):
    pathlib.Path(out).write_bytes(group)

  monkeypatch.setattr(merge, "merge", interrupted)
  # The fork's child only writes its part (no thread pool of this process is used there).
  monkeypatch.setattr(export, "_second_process", lambda: forked)
  with pytest.raises(KeyboardInterrupt):
    export._in_two(convert, b"one", b"two", str(tmp_path / "m.tflite"))  # pylint: disable=protected-access
  assert list(tmp_path.iterdir()) == []


def test_merge_refuses_a_signature_in_both_files(whole, tmp_path):
  with pytest.raises(merge.MergeError, match="both files have the signature decode"):
    merge.merge(whole, whole, tmp_path / "out.tflite")
  with pytest.raises(merge.MergeError, match="no TFL3 identifier"):
    (tmp_path / "junk.tflite").write_bytes(b"junk" * 10)
    merge.merge(tmp_path / "junk.tflite", whole, tmp_path / "out.tflite")


def _externalized(path: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """`path` with every buffer's data stored after the flatbuffer, at an offset: how the converter
  writes files over 2 GB, which a test cannot afford to make."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
  data = {}
  for buffer in model.buffers:
    if buffer.data is not None and len(buffer.data):
      data[id(buffer)] = buffer.data.tobytes()
      buffer.data, buffer.offset, buffer.size = None, 2, len(data[id(buffer)])
  size = len(compact.pack(model))
  cursor = compact.align(size)
  for buffer in model.buffers:
    if id(buffer) in data:
      buffer.offset = cursor
      cursor = compact.align(cursor + buffer.size)
  packed = compact.pack(model)
  assert len(packed) == size
  with open(out, "wb") as f:
    f.write(packed)
    for buffer in model.buffers:
      if id(buffer) in data:
        f.write(b"\0" * (buffer.offset - f.tell()))
        f.write(data[id(buffer)])
  return out


def test_weights_stored_after_the_flatbuffer_are_merged_once(whole, split, tmp_path):
  inline, parts = split
  outside = [_externalized(p, tmp_path / f"outside{i}.tflite") for i, p in enumerate(parts)]
  np.testing.assert_array_equal(_outputs(outside[0])["decode"]["logits"],
                                _outputs(parts[0])["decode"]["logits"])
  out = tmp_path / "merged.tflite"
  merge.merge(outside[0], outside[1], out)
  expected, found = _outputs(inline), _outputs(out)
  assert list(found) == list(expected)
  for name, outputs in expected.items():
    for key, value in outputs.items():
      np.testing.assert_array_equal(found[name][key], value, err_msg=f"{name} {key}")
  # Every weight of the second file was found in the first: each is stored once.
  assert _stored_bytes(out) <= _stored_bytes(whole) * 1.01
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  found = schema.Model.GetRootAs(out.read_bytes(), 0)
  buffers = [found.Buffers(i) for i in range(found.BuffersLength())]
  assert not any(b.DataLength() for b in buffers) and any(b.Offset() > 1 for b in buffers)
