"""tools/convert and the pipeline behind it: files, manifest, atomic writes, errors by message."""

import errno
import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from litezoo import pipeline, sources
from litezoo.artifacts import cache, files, manifest as manifest_lib
from litezoo.conversion import convert
from litezoo.core import registry
from litezoo.core.spec import Signatures, SignatureError, UnknownVariantError
from litezoo.quant import recipes
from litezoo.runtime import runner
from litezoo.sources import weights as weights_lib
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
# Two signatures (each costs seconds to convert): the cache tests need a file, not every kind.
SMALL = Signatures(prefill_seq_lens=(8,), kv_cache_max_len=32)


def test_cli_converts_and_the_manifest_describes_the_file(tmp_path):
  result = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny", "--quantize=none",
                            "--prefill_seq_lens=16,8", "--kv_cache_max_len=32",
                            "--output_dir=out", cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  for stage in ("[1/4] build and load weights", "[2/4] export float", "[3/4] quantize (none)"):
    assert f"{stage} done in" in result.stderr
  # Quiet: the converter's and LiteRT's own output (lowering logs, accelerator probes) is kept
  # aside; stderr holds the tool's own lines only.
  assert ("--kv_cache_max_len=32 leaves out the model's decode_w256, decode_w512, decode_w768 "
          "(too long for that cache), and the window signatures built on them"
          in result.stderr.splitlines())  # the plugin's windows: said, not dropped silently
  assert all(line.startswith(("[", "wrote ", "writing random weights", "converting ",
                              "--kv_cache_max_len=32 leaves out ")) for line in
             result.stderr.strip().splitlines()), result.stderr
  out = tmp_path / "out"  # relative to the directory `bazel run` was started from
  tflite = out / "tinyllama-tiny_none_ekv32.tflite"
  assert sorted(p.name for p in out.iterdir()) == [
      "tinyllama-tiny_none_ekv32.manifest.json", tflite.name]
  manifest = json.loads(manifest_lib.manifest_path(tflite).read_text())
  assert manifest["format"] == manifest_lib.FORMAT
  assert manifest["sha256"] == files.sha256_file(tflite)
  assert manifest["size_bytes"] == tflite.stat().st_size
  assert (manifest["model"], manifest["variant"]) == ("tinyllama", "tiny")
  assert manifest["plugin_version"] == SPEC.version
  assert manifest["recipe"]["name"] == "none"
  assert (manifest["checkpoint"]["kind"], manifest["checkpoint"]["seed"]) == ("random", 0)
  # The plugin's verify_8 kept, its decode windows (256, 512, 768) left out: they do not fit 32.
  assert manifest["signatures"] == {"prefill_seq_lens": [8, 16], "kv_cache_max_len": 32,
                                    "kv_layout": "transposed", "prefill_logits": "last",
                                    "verify_lengths": [8], "decode_windows": []}
  assert manifest["versions"]["litert-torch"] == "0.10.0"
  assert manifest["conversion"]["peak_rss_bytes"] > 0
  sigs = manifest["signature_details"]
  assert sorted(sigs) == ["decode", "prefill_16", "prefill_8", "verify_8"]
  assert sigs["prefill_8"]["inputs"]["tokens"] == {"dtype": "int32", "shape": [1, 8]}
  assert sigs["decode"]["inputs"]["input_pos"] == {"dtype": "int32", "shape": [1]}
  # The transposed layout: K [batch, kv heads, kv length, head dim], V [.., head dim, kv length]
  assert sigs["decode"]["inputs"]["kv_cache_k_1"]["shape"] == [1, 2, 32, 16]
  assert sigs["decode"]["inputs"]["kv_cache_v_1"]["shape"] == [1, 2, 16, 32]
  assert sigs["prefill_16"]["outputs"]["logits"]["shape"] == [1, 1, 256]  # the last token's
  assert sigs["verify_8"]["outputs"]["logits"]["shape"] == [1, 8, 256]  # every token's


def test_cli_kv_layout_flag_picks_litert_torchs_default_layout(small_cache, tmp_path,
                                                              monkeypatch):
  # Where another conversion of that name lies (SMALL: other signatures, the same cache length).
  earlier = tmp_path / "out" / "tinyllama-tiny_none_ekv32.tflite"
  cache.fill_from(_cached_small(small_cache, tmp_path, monkeypatch), earlier)
  # No --prefill_seq_lens: of the plugin's (32, 128), the one that fits the 32-entry cache.
  result = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny", "--quantize=none",
                            "--kv_cache_max_len=32", "--kv_layout=default",
                            "--verify_lengths=none", "--output_dir=out", cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  # Replaced, and said so (a trial: a bundle of other signatures was replaced silently).
  assert f"replacing {earlier}, which held a different conversion of that name" in result.stderr
  manifest = json.loads((tmp_path / "out" / "tinyllama-tiny_none_ekv32.manifest.json").read_text())
  assert manifest["signatures"]["prefill_seq_lens"] == [32]
  inputs = manifest["signature_details"]["decode"]["inputs"]
  assert inputs["kv_cache_k_0"]["shape"] == inputs["kv_cache_v_0"]["shape"] == [1, 32, 2, 16]
  bad = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny", "--kv_layout=bshd",
                         cwd=tmp_path)
  assert testing.one_line_error(bad, "convert") == (
      "convert: error: unknown kv cache layout 'bshd'; choose one of transposed, default")


@pytest.mark.parametrize("args, message", [
    (["--model=gpt-17"], "unknown model 'gpt-17'; registered models: "
     + ", ".join(registry.Registry().names())),
    (["--model=tinyllama", "--variant=tiny", "--random_weights", "--checkpoint=."],
     "--random_weights and --checkpoint exclude each other"),
    (["--model=tinyllama", "--variant=tiny", "--weights_seed=3", "--checkpoint=."],
     "--weights_seed and --checkpoint exclude each other"),
    # A trial: accepted though it could change nothing.
    (["--model=tinyllama", "--variant=tiny", "--random_weights"],
     "--random_weights applies to a variant with real weights; tinyllama-tiny has random "
     "weights already: drop the flag"),
    (["--model=tinyllama", "--variant=tiny", "--allow_pickle"],
     "--allow_pickle applies only to a --checkpoint"),
    (["--model=smollm2", "--weights_seed=3"], "--weights_seed applies only to random weights"),
    (["--model=phi2"], "phi2-2.7b has no pinned source here (no sha256s recorded to check a "
     "download against): download it from https://huggingface.co/microsoft/phi-2 and pass "
     "--checkpoint=DIR"),
    (["--model=tinyllama", "--variant=tiny", "--prefill_seq_lens=8,x"],
     "--prefill_seq_lens must be a comma-separated list of integers, got '8,x'"),
    (["--model=tinyllama", "--variant=tiny", "--prefill_seq_lens="],
     "--prefill_seq_lens is empty: give a comma-separated list of integers, or leave the flag "
     "out for the default"),
    (["--model=tinyllama", "--variant=tiny", "--prefill_seq_lens= "],
     "--prefill_seq_lens is empty: give a comma-separated list of integers, or leave the flag "
     "out for the default"),
    (["--model=tinyllama", "--variant=tiny", "--decode_windows="],
     "--decode_windows is empty: give a comma-separated list of integers or 'none'"),
    (["--model=tinyllama", "--variant=tiny", "--decode_windows=2_56"],
     "--decode_windows must be a comma-separated list of integers or 'none', got '2_56'"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=32", "--decode_windows=64"],
     "decode window 64 must be between 1 and the kv cache length 32 (exclusive): drop it (the "
     "full cache has its own decode), or raise --kv_cache_max_len above it"),
    (["--model=tinyllama", "--variant=tiny", "--decode_windows=0"],
     "decode window 0 must be between 1 and the kv cache length 1024 (exclusive): drop it"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=64", "--decode_windows=16",
      "--prefill_windows=32"],
     "prefill window 32 is not one of the decode windows [16]: a prompt prefilled into a window "
     "decodes on in it; add it to the decode windows"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=64", "--decode_windows=16",
      "--prefill_windows=16", "--prefill_seq_lens=32"],
     "prefill window 16 is shorter than every prefill length [32]: add a prefill length of at "
     "most 16, or drop the window"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=24", "--prefill_windows=32"],
     "prefill window 32 must be between 1 and the kv cache length 24 (exclusive)"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=64", "--decode_windows=16",
      "--prefill_seq_lens=8", "--prefill_windows=16,16"],
     "duplicate prefill windows in [16, 16]: give each once"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=64", "--decode_windows=16",
      "--verify_windows=32"],
     "verify window 32 is not one of the decode windows [16]: decoding goes on in the window a "
     "draft was verified in; add it to the decode windows"),
    (["--model=smollm2", "--variant=tiny", "--kv_cache_max_len=128", "--verify_windows=256"],
     "verify window 256 must be between 1 and the kv cache length 128 (exclusive): drop it (the "
     "full cache has its own verify), or raise --kv_cache_max_len above it"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=64", "--decode_windows=16",
      "--verify_lengths=none", "--verify_windows=16"],
     "verify window 16 has no verify length that fits it (verify lengths []): add --verify_lengths "
     "(e.g. 8), or drop the verify windows"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=64", "--decode_windows=16",
      "--verify_lengths=32", "--verify_windows=16"],
     "verify window 16 has no verify length that fits it (verify lengths [32]): add a verify "
     "length of at most 16, or drop the window"),
    (["--model=tinyllama", "--variant=tiny", "--kv_cache_max_len=64", "--decode_windows=16",
      "--verify_windows=16,16"],
     "duplicate verify windows in [16, 16]: give each once"),
    (["--model=tinyllama", "--variant=tiny", "--verify_lengths=1"],
     "verify length 1 must be between 2 and the kv cache length"),
    (["--model=tinyllama", "--variant=tiny", "--prefill_logits=some"],
     "unknown prefill logits 'some'; choose one of last, all"),
    # A trial found these two taken as the plugin's default.
    (["--model=tinyllama", "--variant=tiny", "--prefill_logits="],
     "--prefill_logits is empty: give a value (default: last), or leave the flag out"),
    (["--model=tinyllama", "--variant=tiny", "--kv_layout= "], "--kv_layout is empty"),
])
def test_cli_bad_input_and_options_that_cannot_apply_are_one_line_and_exit_2(tmp_path, args,
                                                                              message):
  result = testing.run_tool("convert", *args, cwd=tmp_path)
  assert testing.one_line_error(result, "convert").startswith(f"convert: error: {message}")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(variant="7b"), UnknownVariantError, "unknown variant '7b' of model 'tinyllama'; "
     "variants: 1.1b, tiny"),
    (dict(signatures=Signatures((0,), 32)), SignatureError,
     "prefill length 0 must be between 1 and the kv cache length 32"),
    (dict(signatures=Signatures((8, 64), 32)), SignatureError,
     "prefill length 64 must be between 1 and the kv cache length 32"),
    (dict(signatures=Signatures((8,), 32, decode_windows=(16,), verify_lengths=(4,),
                                verify_windows=(16.0,))), SignatureError,
     "verify_windows must be integers, got 16.0"),
    (dict(signatures=Signatures((8,), 32, "bsnd")), SignatureError,
     "unknown kv cache layout 'bsnd'; choose one of transposed, default"),
    (dict(signatures=Signatures((8,), 4096)), SignatureError,
     "kv cache length 4096 exceeds the 2048-token context of tinyllama-tiny; pass "
     "--kv_cache_max_len=2048 or less"),
    (dict(recipe="int3"), recipes.UnknownRecipeError,
     "unknown quantization recipe 'int3'; valid recipes: none, fp16, dynamic_int8, "
     "weight_only_int8, dynamic_int4_block32, dynamic_int4_block64, dynamic_int4_block128, "
     "dynamic_int4_block256, dynamic_int4_channel (short names: int8 = dynamic_int8, int4 = "
     "dynamic_int4_block32, float16 = fp16)"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, kwargs, error, message):
  spec = registry.Registry().get(kwargs.pop("model", "tinyllama"))
  variant = kwargs.pop("variant", "tiny")
  kwargs = {"signatures": SMALL, **kwargs}
  with pytest.raises(error) as e:
    convert.convert(spec, variant, _tiny_weights(spec), output_dir=tmp_path, **kwargs)
  assert str(e.value).startswith(message)
  assert not list(tmp_path.iterdir())


def _tiny_weights(spec):
  return pipeline.weights(spec, "tiny", log=lambda _: None)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
  """An artifact cache holding the tiny TinyLlama's SMALL float32 conversion (and its random
  weights), converted once for the tests that start from it: each gets a copy of its own."""
  root = tmp_path_factory.mktemp("small-cache")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("LITEZOO_CACHE", str(root))
    pipeline.artifact(SPEC, "tiny", _tiny_weights(SPEC), recipe="none", signatures=SMALL,
                      log=lambda _: None)
  return root


def _cached_small(small_cache, tmp_path, monkeypatch):
  """A copy of `small_cache` as tmp_path/cache, the LITEZOO_CACHE from now on; its artifact."""
  shutil.copytree(small_cache, tmp_path / "cache")
  monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "cache"))
  return pipeline.cached_artifact(SPEC, "tiny", _tiny_weights(SPEC), recipe="none",
                                  signatures=SMALL)


def test_a_transposed_cache_as_long_as_a_head_is_wide_runs(tmp_path):
  """K [1, heads, 16, 16] and V [1, heads, 16, 16] have one shape: the runner reads the layout
  from the manifest, not from the shapes."""
  artifact = convert.convert(SPEC, "tiny", _tiny_weights(SPEC), output_dir=tmp_path,
                             recipe="none", signatures=Signatures((8,), 16), log=lambda _: None)
  run = runner.Runner(artifact.path)
  assert (run.kv_layout, run.kv_cache_max_len) == ("transposed", 16)
  model = testing.load(SPEC, SPEC.variant("tiny").config, _tiny_weights(SPEC).path, 16)
  np.testing.assert_allclose(run.prefill(testing.PROMPT),
                             testing.zoo_logits(model, testing.PROMPT, 16)[-1:], atol=1e-4, rtol=0)
  # No verify_<k>, and prefill returns the last token only: every position cannot be had.
  assert not run.scores_all_positions
  with pytest.raises(ValueError, match="no verify_<k> signature: convert it with "
                                       "--verify_lengths"):
    run.prefill([1, 2, 3], all_logits=True)


def test_convert_copies_what_the_cache_already_holds(small_cache, tmp_path, monkeypatch):
  """The same settings converted before (by generate, serve, ...): convert copies the cached file
  and its manifest instead of converting again, byte for byte what a conversion writes."""
  cached = _cached_small(small_cache, tmp_path, monkeypatch)
  flags = ("--model=tinyllama", "--variant=tiny", "--quantize=none", "--prefill_seq_lens=8",
           "--kv_cache_max_len=32", "--verify_lengths=none")
  copied = testing.run_tool("convert", *flags, "--output_dir=copy", cwd=tmp_path,
                            env={"LITEZOO_CACHE": str(tmp_path / "cache")})
  assert copied.returncode == 0, copied.stderr[-3000:]
  assert ("a hard link to the cached conversion" in copied.stderr
          and "export float" not in copied.stderr), copied.stderr[-3000:]
  out = tmp_path / "copy" / cached.path.name
  assert os.path.samefile(out, cached.path)  # one file on disk, not two
  assert manifest_lib.open_verified(out).manifest.file == out.name
  # A fresh cache: converted, to the same bytes.
  fresh = testing.run_tool("convert", *flags, "--output_dir=fresh", cwd=tmp_path,
                           env={"LITEZOO_CACHE": str(tmp_path / "empty")})
  assert fresh.returncode == 0 and "[2/4] export float done" in fresh.stderr, fresh.stderr[-3000:]
  assert (tmp_path / "fresh" / out.name).read_bytes() == out.read_bytes()
  # That conversion is cached too (a trial found convert converting the same settings again,
  # and generate a third time): the next convert, anywhere, copies it.
  monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "empty"))
  assert pipeline.cached_artifact(SPEC, "tiny", _tiny_weights(SPEC), recipe="none",
                                  signatures=SMALL).path.read_bytes() == out.read_bytes()
  again = testing.run_tool("convert", *flags, "--output_dir=again", cwd=tmp_path,
                           env={"LITEZOO_CACHE": str(tmp_path / "empty")})
  assert again.returncode == 0 and "a hard link to the cached conversion" in again.stderr
  assert "replacing" not in testing.run_tool(  # the same bytes where they were: nothing to say
      "convert", *flags, "--output_dir=again", cwd=tmp_path,
      env={"LITEZOO_CACHE": str(tmp_path / "empty")}).stderr
  # A linked output changed in place is the cache's file changed: both readers catch it, and the
  # cache converts its own again (a new file: the output keeps the changed one).
  with open(tmp_path / "again" / out.name, "r+b") as f:
    f.seek(-1, os.SEEK_END)
    last = f.read(1)
    f.seek(-1, os.SEEK_END)
    f.write(bytes([last[0] ^ 1]))
  with pytest.raises(files.ArtifactError, match="does not match its manifest"):
    manifest_lib.open_verified(tmp_path / "again" / out.name)
  assert pipeline.cached_artifact(SPEC, "tiny", _tiny_weights(SPEC), recipe="none",
                                  signatures=SMALL) is None


def test_convert_copies_where_it_cannot_link(small_cache, tmp_path, monkeypatch):
  """Another file system (EXDEV) or one without hard links: the output is a whole copy."""
  cached = _cached_small(small_cache, tmp_path, monkeypatch)

  def no_link(*_):
    raise OSError(errno.EXDEV, "Invalid cross-device link")

  monkeypatch.setattr(os, "link", no_link)
  out, linked = cache.fill_from(cached, tmp_path / "out" / cached.path.name, link=True)
  assert not linked and not os.path.samefile(out.path, cached.path)
  assert out.path.read_bytes() == cached.path.read_bytes()
  assert manifest_lib.open_verified(out.path).manifest.file == out.path.name
  assert sorted(p.name for p in out.path.parent.iterdir()) == sorted(  # no temp file left
      [out.path.name, out.path.name.removesuffix(".tflite") + ".manifest.json"])


def test_convert_quantizes_the_cached_float_conversion(small_cache, tmp_path, monkeypatch):
  """A quantized recipe on a cache miss whose float32 conversion is cached: convert quantizes that
  file (seconds) instead of converting again, to the bytes a conversion from scratch writes."""
  cached = _cached_small(small_cache, tmp_path, monkeypatch)
  flags = ("--model=tinyllama", "--variant=tiny", "--quantize=dynamic_int8",
           "--prefill_seq_lens=8", "--kv_cache_max_len=32", "--verify_lengths=none")
  quantized = testing.run_tool("convert", *flags, "--output_dir=q", cwd=tmp_path,
                               env={"LITEZOO_CACHE": str(tmp_path / "cache")})
  assert quantized.returncode == 0, quantized.stderr[-3000:]
  assert (f"quantizing the cached float32 conversion {cached.path}" in quantized.stderr
          and "export float" not in quantized.stderr), quantized.stderr
  out = tmp_path / "q" / "tinyllama-tiny_dynamic_int8_ekv32.tflite"
  assert manifest_lib.open_verified(out).manifest.recipe_name == "dynamic_int8"
  fresh = testing.run_tool("convert", *flags, "--output_dir=fresh", cwd=tmp_path,
                           env={"LITEZOO_CACHE": str(tmp_path / "empty")})
  assert fresh.returncode == 0 and "[2/4] export float done" in fresh.stderr, fresh.stderr[-3000:]
  assert (tmp_path / "fresh" / out.name).read_bytes() == out.read_bytes()


def test_a_copy_of_a_checkpoint_elsewhere_is_the_same_cached_conversion(tmp_path, monkeypatch):
  """The cache keys a local checkpoint by its files' sha256s, not by where it lies: a copy in
  another directory finds the conversion of the first; changed bytes do not."""
  import shutil  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "cache"))
  source = _tiny_weights(SPEC).path
  first, second = tmp_path / "a" / "ckpt", tmp_path / "b" / "ckpt"
  shutil.copytree(source, first)
  shutil.copytree(source, second)
  resolve = lambda path: weights_lib.resolve(SPEC, "tiny", path, log=lambda _: None)
  made = pipeline.artifact(SPEC, "tiny", resolve(first), recipe="none", signatures=SMALL,
                           log=lambda _: None)
  found = pipeline.cached_artifact(SPEC, "tiny", resolve(second), recipe="none",
                                   signatures=SMALL)
  assert found is not None and found.path == made.path
  assert made.manifest.checkpoint["path"] == str(first.resolve())  # the manifest still says where
  with open(second / "config.json", "a") as f:
    f.write("\n")  # one byte more: other files, another key
  assert pipeline.cached_artifact(SPEC, "tiny", resolve(second), recipe="none",
                                  signatures=SMALL) is None


def test_missing_checkpoint_and_unwritable_output_dir(tmp_path):
  with pytest.raises(sources.CheckpointError, match=r"checkpoint .*/nope does not exist"):
    weights_lib.resolve(SPEC, "tiny", tmp_path / "nope")
  (tmp_path / "a_file").write_text("")
  with pytest.raises(files.OutputError,
                     match=r"output directory .*a_file/out cannot be made inside .*a_file, which "
                     r"is a file, not a directory; choose another with --output_dir"):
    convert.convert(SPEC, "tiny", _tiny_weights(SPEC), signatures=SMALL,
                    output_dir=tmp_path / "a_file" / "out")
  with pytest.raises(files.OutputError, match=r"output directory .*a_file is a file, not a "
                     "directory; choose another with --output_dir"):
    files.ensure_writable_dir(tmp_path / "a_file")


def test_a_failed_conversion_leaves_no_partial_file(tmp_path, monkeypatch):
  from litezoo.conversion import export  # pylint: disable=g-import-not-at-top
  old = tmp_path / "tinyllama-tiny_dynamic_int8_ekv32.tflite"
  old.write_bytes(b"the previous artifact")

  exported = []

  def export_float(model, signatures, path):  # the export is not the point: its scratch file is
    exported.append(path)
    pathlib.Path(path).write_bytes(b"a float export")
    return {"export_processes": 1}

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt  # as if Ctrl-C arrived while quantizing

  monkeypatch.setattr(export, "export_float", export_float)
  monkeypatch.setattr(export, "quantize_file", interrupted)
  weights = _tiny_weights(SPEC)
  with pytest.raises(KeyboardInterrupt):
    convert.convert(SPEC, "tiny", weights, signatures=Signatures((8,), 32), output_dir=tmp_path,
                    log=lambda _: None)
  assert exported and not pathlib.Path(exported[0]).exists()  # the scratch float is gone too
  assert [p.name for p in tmp_path.iterdir()] == [old.name]
  assert old.read_bytes() == b"the previous artifact"


def test_sigterm_mid_conversion_unwinds_like_ctrl_c(tmp_path):
  """`timeout` or a CI runner's cancel sends SIGTERM: the tool removes its temp files, says so in
  one line and exits 143 (Python's default would die on the spot, leaving a .partial file)."""
  import os  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = {**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT),
         "BUILD_WORKING_DIRECTORY": str(tmp_path), "LITEZOO_CACHE": str(tmp_path / "cache")}
  # convert converts into the cache, then copies: the temp file is beside the cached one.
  temps = lambda: list((tmp_path / "cache" / "artifacts").rglob(".tinyllama-tiny_none_*"))
  with subprocess.Popen([sys.executable, "-m", "litezoo.tools.convert", "--model=tinyllama",
                         "--variant=tiny", "--quantize=none", "--prefill_seq_lens=8",
                         "--kv_cache_max_len=32", "--output_dir=out"],
                        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                        text=True) as proc:
    seen = []
    for line in proc.stderr:
      seen.append(line)
      if line.startswith("[2/4] export float ..."):  # the temp file exists from here on
        assert temps(), "no temp file to clean up"
        proc.send_signal(signal.SIGTERM)
        break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, "".join(seen) + rest
  assert rest.strip().splitlines()[-1:] == [
      "convert: terminated; nothing partial was left behind"], rest
  # The temp file is gone, and so is the output directory the tool made (it was empty).
  assert not temps() and not (tmp_path / "out").exists()


def test_a_long_stage_says_it_is_still_running():
  import threading, time  # pylint: disable=g-import-not-at-top,multiple-imports
  lines = []
  stages = convert._Stages(lines.append, total=2, heartbeat=0.05)  # pylint: disable=protected-access
  assert stages.run("export float", lambda x: time.sleep(0.23) or x + 1, 1) == 2
  assert stages.run("write", lambda: None) is None
  assert lines[0] == "[1/2] export float ..."
  beats = [line for line in lines if "still running" in line]
  assert len(beats) >= 2 and all(b.startswith("[1/2] export float: still running, 0 min 00 s")
                                 for b in beats)
  assert lines[len(beats) + 1].startswith("[1/2] export float done in 0.2 s")
  assert lines[-2:][0] == "[2/2] write ..." and "still running" not in lines[-1]
  said = convert._Stages(lines.append, total=1)  # pylint: disable=protected-access
  said.run("add", lambda: 5, detail=lambda r: f"got {r}")
  assert lines[-1].startswith("[1/1] add done in 0.0 s, got 5 (peak RSS ")
  assert not [t for t in threading.enumerate() if t.name == "litezoo-stage-heartbeat"]


def test_the_cache_key_covers_the_zoos_conversion_code(tmp_path):
  """A fix to a family (or the exporter, the loader, a recipe) must not be answered with the
  file the old code wrote: the zoo's conversion code is part of every artifact's key."""
  import shutil  # pylint: disable=g-import-not-at-top
  from litezoo.artifacts import cache  # pylint: disable=g-import-not-at-top
  root = testing.RUNFILES_ROOT / "litezoo"
  for package in cache.CODE_PACKAGES:
    shutil.copytree(root / package, tmp_path / package)
  assert cache.code_identity(tmp_path) == cache.code_identity(root) == cache.code_identity()
  llama = tmp_path / "families" / "llama.py"
  llama.write_text(llama.read_text().replace("gate_proj", "up_proj_swapped", 1))
  assert cache.code_identity.__wrapped__(tmp_path) != cache.code_identity(root)
  weights = _tiny_weights(SPEC)
  with pytest.MonkeyPatch.context() as patch:
    before = cache.key(SPEC, "tiny", "none", SMALL, weights)
    patch.setattr(cache, "code_identity", lambda: "another version of the code")
    assert cache.key(SPEC, "tiny", "none", SMALL, weights) != before


SWALLOWING_TOOL = '''
import os, signal
from litezoo.tools import common, console

def main(argv):
  try:  # a library's bare except around an import, as some do
    os.kill(os.getpid(), signal.{signal})
    for _ in range(10**7):
      pass
  except:  # noqa: E722
    pass
  console.log("next stage")
  console.out("finished")
  return 0

common.run(main)
'''


@pytest.mark.parametrize("signal_name, code, message", [
    ("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_signal_a_library_swallows_still_stops_the_tool(tmp_path, signal_name, code, message):
  """Ctrl-C or SIGTERM whose exception a library's bare `except:` swallowed (seen while the
  converter imports) stops the tool at its next progress line, as if nothing had caught it."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = tmp_path / "swallowing_tool.py"
  script.write_text(SWALLOWING_TOOL.replace("{signal}", signal_name))
  run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT)}, check=False)
  assert run.returncode == code, run.stderr[-2000:]
  assert run.stderr.strip().splitlines()[-1] == (
      f"swallowing_tool: {message}; nothing partial was left behind")
  assert "next stage" not in run.stderr and "finished" not in run.stdout


def test_an_interrupt_while_text_streams_ends_the_line_before_saying_so(tmp_path):
  """Streamed text (generate writes token by token) gets its line ended before the notice, so
  on a terminal the notice is not glued to the last word."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = tmp_path / "streaming_tool.py"
  script.write_text("from litezoo.tools import common, console\n\n"
                    "def main(argv):\n"
                    "  console.out('a dozen', end='')\n"
                    "  raise KeyboardInterrupt\n\n"
                    "common.run(main)\n")
  run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT)}, check=False)
  assert run.returncode == 130, run.stderr[-2000:]
  assert run.stdout == "a dozen\n"
  assert run.stderr.strip().splitlines()[-1] == (
      "streaming_tool: interrupted; nothing partial was left behind")


def test_a_full_disk_is_one_line_not_a_bug_report(tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = tmp_path / "writing_tool.py"
  script.write_text("import errno\nfrom litezoo.tools import common\n\n"
                    "def main(argv):\n"
                    "  raise OSError(errno.ENOSPC, 'No space left on device', '/out/m.tflite')\n\n"
                    "common.run(main)\n")
  run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT),
                            "LITEZOO_CACHE": str(tmp_path / "cache")}, check=False)
  assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
  assert run.stderr.strip().splitlines() == [
      "writing_tool: error: no space left on the device writing /out/m.tflite: free some, or "
      "choose another --output_dir (converted files are cached under $LITEZOO_CACHE, default "
      "~/.cache/litezoo); nothing partial was left behind"]
  assert not (tmp_path / "cache" / "logs").exists()  # no bug report saved


def test_the_litezoo_command_runs_the_tool_it_names_and_explains_itself(tmp_path):
  for flag in ("--help", "-h"):
    run = testing.run_tool("cli", flag)
    assert run.returncode == 0 and run.stderr == "", (flag, run.stderr)
    assert run.stdout.startswith("usage: litezoo <tool> [--flags]; tools: convert, generate, ")
  for args, given in (((), ""), (("gpt",), "unknown tool 'gpt'; "), (("--verbose",),
                                                                      "unknown tool '--verbose'; ")):
    run = testing.run_tool("cli", *args)
    assert testing.one_line_error(run, "litezoo") == (
        f"litezoo: error: {given}usage: litezoo <tool> [--flags]; tools: convert, generate, serve, "
        "verify, evaluate, bundle, benchmark, explore, release, new_plugin; `litezoo <tool> "
        "--help` lists a tool's flags")
  for flag in ("--help", "--helpfull"):  # absl exits 1 after its usage: asked-for help is 0
    run = testing.run_tool("cli", "convert", flag)
    assert run.returncode == 0 and "--quantize" in run.stdout, (flag, run.stderr[-500:])
  run = testing.run_tool("cli", "convert", "--model=gpt-17", cwd=tmp_path)
  assert testing.one_line_error(run, "convert").startswith(
      "convert: error: unknown model 'gpt-17'; registered models: ")
