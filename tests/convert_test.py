"""tools/convert and the pipeline behind it: files, manifest, atomic writes, errors by message."""

import json

import pytest

from litezoo.core import artifacts, checkpoint, convert, registry
from litezoo.core.spec import Signatures, SignatureError, UnknownVariantError
from litezoo.quant import recipes
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
SMALL = Signatures(prefill_seq_lens=(8, 16), kv_cache_max_len=32)


def test_cli_converts_and_the_manifest_describes_the_file(tmp_path):
  result = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny", "--quantize=none",
                            "--prefill_seq_lens=16,8", "--kv_cache_max_len=32",
                            "--output_dir=out", cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  for stage in ("[1/5] build model", "[3/5] export float", "[4/5] quantize (none)"):
    assert f"{stage} done in" in result.stdout
  out = tmp_path / "out"  # relative to the directory `bazel run` was started from
  tflite = out / "tinyllama-tiny_none_ekv32.tflite"
  assert sorted(p.name for p in out.iterdir()) == [
      "tinyllama-tiny_none_ekv32.manifest.json", tflite.name]
  manifest = json.loads(artifacts.manifest_path(tflite).read_text())
  assert manifest["sha256"] == checkpoint.sha256_file(tflite)
  assert manifest["size_bytes"] == tflite.stat().st_size
  assert (manifest["model"], manifest["variant"]) == ("tinyllama", "tiny")
  assert manifest["plugin_version"] == SPEC.version
  assert manifest["recipe"]["name"] == "none"
  assert manifest["checkpoint"] == {"kind": "random", "seed": 0}
  assert manifest["versions"]["litert-torch"] == "0.10.0"
  assert manifest["conversion"]["peak_rss_bytes"] > 0
  sigs = manifest["signatures"]
  assert sorted(sigs) == ["decode", "prefill_16", "prefill_8"]
  assert sigs["prefill_8"]["inputs"]["tokens"] == {"dtype": "int32", "shape": [1, 8]}
  assert sigs["decode"]["inputs"]["input_pos"] == {"dtype": "int32", "shape": [1]}
  # The transposed layout: K [batch, kv heads, kv length, head dim], V [.., head dim, kv length]
  assert sigs["decode"]["inputs"]["kv_cache_k_1"]["shape"] == [1, 2, 32, 16]
  assert sigs["decode"]["inputs"]["kv_cache_v_1"]["shape"] == [1, 2, 16, 32]
  assert sigs["prefill_16"]["outputs"]["logits"]["shape"] == [1, 16, 256]


def test_cli_kv_layout_flag_picks_litert_torchs_default_layout(tmp_path):
  result = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny", "--quantize=none",
                            "--prefill_seq_lens=8", "--kv_cache_max_len=32", "--kv_layout=default",
                            "--output_dir=out", cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  manifest = json.loads((tmp_path / "out" / "tinyllama-tiny_none_ekv32.manifest.json").read_text())
  inputs = manifest["signatures"]["decode"]["inputs"]
  assert inputs["kv_cache_k_0"]["shape"] == inputs["kv_cache_v_0"]["shape"] == [1, 32, 2, 16]
  bad = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny", "--kv_layout=bshd",
                         cwd=tmp_path)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1] == (
      "convert: error: unknown kv cache layout 'bshd'; choose one of transposed, default")


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
  result = testing.run_tool("convert", "--model=gpt-17", cwd=tmp_path)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "convert: error: unknown model 'gpt-17'; registered models: "
      + ", ".join(registry.Registry().names()))
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(variant="7b"), UnknownVariantError, "unknown variant '7b' of model 'tinyllama'; "
     "variants: 1.1b, tiny"),
    (dict(signatures=Signatures((0,), 32)), SignatureError,
     "prefill length 0 must be between 1 and the kv cache length 32"),
    (dict(signatures=Signatures((8, 64), 32)), SignatureError,
     "prefill length 64 must be between 1 and the kv cache length 32"),
    (dict(signatures=Signatures((8,), 32, "bsnd")), SignatureError,
     "unknown kv cache layout 'bsnd'; choose one of transposed, default"),
    (dict(signatures=Signatures((8,), 16)), SignatureError,
     "a transposed kv cache cannot be exactly as long as a head is wide (16): choose another"),
    (dict(signatures=Signatures((8,), 4096)), convert.ConvertError,
     "kv cache length 4096 exceeds the 2048-token context of tinyllama-tiny; pass "
     "--kv_cache_max_len=2048 or less"),
    (dict(recipe="int3"), recipes.UnknownRecipeError,
     "unknown quantization recipe 'int3'; valid recipes: none, fp16, dynamic_int8, "
     "weight_only_int8, dynamic_int4_block32, dynamic_int4_block128"),
    (dict(model="phi2", variant="2.7b"), convert.ConvertError,
     "phi2-2.7b needs a checkpoint: pass --checkpoint=DIR (safetensors), or --random_weights"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, kwargs, error, message):
  spec = registry.Registry().get(kwargs.pop("model", "tinyllama"))
  kwargs = {"variant": "tiny", "signatures": SMALL, **kwargs}
  with pytest.raises(error) as e:
    convert.convert(spec, output_dir=tmp_path, **kwargs)
  assert str(e.value).startswith(message)
  assert not list(tmp_path.iterdir())


def test_missing_checkpoint_and_unwritable_output_dir(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match=r"checkpoint .*/nope does not exist"):
    convert.convert(SPEC, "tiny", checkpoint=tmp_path / "nope", output_dir=tmp_path)
  (tmp_path / "a_file").write_text("")
  with pytest.raises(artifacts.OutputError,
                     match=r"output directory .*a_file/out is not writable .*--output_dir"):
    convert.convert(SPEC, "tiny", signatures=SMALL, output_dir=tmp_path / "a_file" / "out")


def test_a_failed_conversion_leaves_no_partial_file(tmp_path, monkeypatch):
  from litezoo.core import export  # pylint: disable=g-import-not-at-top
  old = tmp_path / "tinyllama-tiny_dynamic_int8_ekv32.tflite"
  old.write_bytes(b"the previous artifact")

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt  # as if Ctrl-C arrived while quantizing

  monkeypatch.setattr(export, "quantize_file", interrupted)
  with pytest.raises(KeyboardInterrupt):
    convert.convert(SPEC, "tiny", signatures=SMALL, output_dir=tmp_path, log=lambda _: None)
  assert [p.name for p in tmp_path.iterdir()] == [old.name]
  assert old.read_bytes() == b"the previous artifact"
