"""The CompiledModel runner against the LiteRT Interpreter reference on tiny converted models: the
same logits through chunked prefill, decode (moving between decode windows), verify, rewind and
reset; last-token prefill, verify and windows against PyTorch; the XNNPACK weight cache is written
once, published atomically, reused by a second start, and never handed to XNNPACK half-written."""

import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from litezoo import pipeline
from litezoo.artifacts import manifest
from litezoo.conversion import convert
from litezoo.core import registry
from litezoo.core.spec import Signatures
from litezoo.runtime import runner
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
# verify_4 and verify_8, decode windows of 16 and 32 entries, so a session crosses both into the
# full cache: the suites' shared signatures (//tests:tinyllama_tiny_float, converted once).
SIGNATURES = testing.TINY_SIGNATURES
# The module's artifact cache (autouse), where the fixture below puts its files.
module_artifact_cache = testing.module_artifact_cache


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """Converted tiny models, float and dynamic int8 (same seeded random weights), and the float
  one again with litert-torch's default KV cache layout and all-position prefill logits (what
  files before manifest format 3 return), no verify and no windows."""
  weights = pipeline.weights(SPEC, "tiny", log=lambda _: None)
  found = {recipe: pipeline.artifact(SPEC, "tiny", weights, recipe=recipe, signatures=SIGNATURES,
                                     log=lambda _: None).path
           for recipe in ("none", "dynamic_int8")}
  found["none-default-layout"] = convert.convert(
      SPEC, "tiny", weights, recipe="none",
      signatures=Signatures((8, 16), 64, kv_layout="default", prefill_logits="all"),
      output_dir=tmp_path_factory.mktemp("default"), log=lambda _: None).path
  found["weights"] = weights.path
  return found


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
  monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "cache"))
  return tmp_path / "cache"


def _drive(run: runner.Runner, tokens: list[int]) -> tuple[list[np.ndarray], list[int]]:
  """A session touching every path: a short prompt and greedy decode through windows 16 and 32
  into the full cache, verify, chunked prefill (16+16+5), a rewind, a padded prefill after it, a
  reset, and prefill up to the cache end (the tail fed through decode). Returns every logits
  array and the greedy tokens."""
  logits, greedy = [run.prefill(tokens[:5])], []
  for _ in range(36):  # positions 5..40: windows 16, 32, then the full cache
    greedy.append(int(logits[-1].reshape(-1, logits[-1].shape[-1])[-1].argmax()))
    logits.append(run.decode(greedy[-1]))
  run.position = 10
  logits.append(run.decode(greedy[0]))  # back into window 16 after a rewind
  if run.scores_all_positions:
    logits.append(run.verify(tokens[5:9]))
    logits.append(run.prefill(tokens[:9], all_logits=True))
  run.reset()
  logits.append(run.prefill(tokens))
  for _ in range(12):
    greedy.append(int(logits[-1].reshape(-1, logits[-1].shape[-1])[-1].argmax()))
    logits.append(run.decode(greedy[-1]))
  run.position = 20
  logits.append(run.prefill(tokens[:3]))
  logits.append(run.decode(greedy[0]))
  run.reset()
  logits.append(run.prefill(tokens[:5]))
  logits.append(run.prefill(list(range(1, 60))))  # fills 5..63: chunks 16,16,16, then 8 + decode
  assert run.position == run.kv_cache_max_len
  return logits, greedy


@pytest.mark.parametrize("recipe, atol", [("none", 1e-5), ("dynamic_int8", None)])
def test_compiled_runner_gives_the_interpreter_logits(models, recipe, atol):
  tokens = [int(t) for t in np.random.default_rng(1).integers(0, 256, 37)]
  fast = runner.Runner(models[recipe])
  reference = runner.Runner(models[recipe], backend="interpreter")
  assert fast.backend == "compiled" and reference.backend == "interpreter"
  assert fast.prefill_lengths == reference.prefill_lengths == [8, 16]
  assert fast.verify_lengths == reference.verify_lengths == [4, 8]
  assert fast.windows == reference.windows == [16, 32]
  assert fast.kv_cache_max_len == reference.kv_cache_max_len == 64
  got, got_greedy = _drive(fast, tokens)
  want, want_greedy = _drive(reference, tokens)
  assert got_greedy == want_greedy
  assert [g.shape for g in got] == [w.shape for w in want]
  if atol is not None:
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, atol=atol, rtol=0)
  else:  # int8: the same greedy tokens at every step
    assert [g.reshape(-1, g.shape[-1]).argmax(-1).tolist() for g in got] == \
        [w.reshape(-1, w.shape[-1]).argmax(-1).tolist() for w in want]


@pytest.mark.parametrize("backend", runner.BACKENDS)
def test_runners_sharing_a_model_keep_their_caches_apart(models, backend):
  """Two sequences driven step by step in turns on one loaded model (Runner.share, as the server's
  slots are) give exactly the logits of each driven alone on a runner of its own."""
  rng = np.random.default_rng(3)
  prompts = [[int(t) for t in rng.integers(0, 256, n)] for n in (5, 21)]
  alone = []
  for prompt in prompts:
    own = runner.Runner(models["none"], backend=backend)
    out = [own.prefill(prompt)[-1]]
    for _ in range(30):  # through windows 16 and 32 into the full cache
      out.append(own.decode(int(out[-1].argmax())))
    alone.append(out)
  first = runner.Runner(models["none"], backend=backend)
  first.prefill([7, 7, 7])  # a sibling starts empty, whatever its origin holds
  pair = [first, first.share()]
  assert pair[1].position == 0
  first.reset()
  turns = [[run.prefill(prompt)[-1]] for run, prompt in zip(pair, prompts)]
  for _ in range(30):
    for run, out in zip(pair, turns):
      out.append(run.decode(int(out[-1].argmax())))
  for got, want in zip(turns, alone):
    np.testing.assert_array_equal(np.stack(got), np.stack(want))


@pytest.mark.parametrize("backend", runner.BACKENDS)
def test_the_runner_holds_only_the_cache_set_the_sequence_is_in(models, backend):
  """A session within 16 entries holds window 16's buffers only (not the full cache's); a set is
  made as the sequence reaches it and freed when the sequence leaves it (but for a verify's round
  trip, test below), and a reset frees all."""
  run = runner.Runner(models["none"], backend=backend)
  held = lambda: set(run._backend.caches)  # pylint: disable=protected-access
  assert held() == set()
  logits = run.prefill([3, 1, 4, 1, 5])
  for _ in range(8):
    logits = run.decode(int(logits.reshape(-1, logits.shape[-1])[-1].argmax()))
  assert run.position == 13 and held() == {16}
  for _ in range(8):
    logits = run.decode(int(logits.reshape(-1, logits.shape[-1])[-1].argmax()))
  assert held() == {32}
  run.verify([2, 7])  # in verify window 32, where decode is
  assert held() == {32} and run.window == 32
  run.verify_windows = []  # as a file without w<W>_verify_<k> signatures: on the full cache
  rows = run.verify([2, 7])
  assert held() == {None, 32}  # window 32 kept for the decode back (a speculative round trip)
  run.position -= 2
  run.verify_windows = [32]
  assert np.array_equal(run.verify([2, 7]), rows)  # back in window 32, from the copy
  assert held() == {32, None}
  for _ in range(2):
    logits = run.decode(int(logits.reshape(-1, logits.shape[-1])[-1].argmax()))
  assert held() == {32, None}  # the full cache's set can still hold the sequence
  run.position = 10
  run.decode(3)  # a move that is no round trip (a rewind into window 16) frees both
  assert held() == {16}
  sibling = run.share()
  assert set(sibling._backend.caches) == set()  # pylint: disable=protected-access
  run.reset()
  assert held() == set() and run.position == 0
  again = run.prefill([3, 1, 4, 1, 5])
  assert np.array_equal(again, runner.Runner(models["none"], backend=backend).prefill(
      [3, 1, 4, 1, 5]))  # a reset runner answers as a fresh one


@pytest.mark.parametrize("backend", runner.BACKENDS)
def test_a_speculative_round_trip_at_a_window_edge_keeps_both_sets(models, backend):
  """A verify padded past window 16's end runs in window 32 and the decode after it comes back:
  both sets stay (the same buffers, not remade) while window 16 can still hold the sequence, a
  decode that grows past 16 frees it, and every logit matches a runner without windows."""
  run = runner.Runner(models["none"], backend=backend)
  plain = runner.Runner(models["none"], backend=backend, use_windows=False)
  caches = lambda: run._backend.caches  # pylint: disable=protected-access
  prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
  np.testing.assert_allclose(run.prefill(prompt), plain.prefill(prompt), rtol=1e-5, atol=1e-5)
  for token in (7, 9):  # position 14, in window 16
    np.testing.assert_allclose(run.decode(token), plain.decode(token), rtol=1e-5, atol=1e-5)
  sets = {}
  for trip in range(3):  # verify 3 tokens (pads to 4: 18 > 16, window 32), keep 1, decode back
    draft = [2 + trip, 7, 1]
    np.testing.assert_allclose(run.verify(draft), plain.verify(draft), rtol=1e-5, atol=1e-5)
    assert run.window == 32 and set(caches()) == {16, 32}
    run.position = plain.position = 14
    np.testing.assert_allclose(run.decode(4), plain.decode(4), rtol=1e-5, atol=1e-5)
    assert run.window == 16 and set(caches()) == {16, 32}
    if trip and backend == "compiled":  # (the interpreter's arrays are new after every call)
      assert all(caches()[w] is sets[w] for w in (16, 32)), "a set was remade on the round trip"
    sets = dict(caches())
    run.position = plain.position = 14
  for token in (6, 6, 6):  # positions 14, 15, then 16: into window 32, which cannot come back
    np.testing.assert_allclose(run.decode(token), plain.decode(token), rtol=1e-5, atol=1e-5)
  assert run.window == 32 and set(caches()) == {32}


@pytest.mark.parametrize("backend", runner.BACKENDS)
def test_a_long_prompt_prefills_through_the_windows_as_it_grows(models, backend):
  """Each chunk of a prompt runs in the smallest window that holds it padded: 37 tokens go 16 into
  window 16, 16 into window 32 and the last 5 (padded to 8) into the full cache, which ends as the
  only set held; a prompt that ends inside window 16 stays there (a chunk of 8, then a token through
  decode_w16), and a longer tail that no padded signature fits there runs as one chunk in window
  32. Logits against the re-authored PyTorch model on the whole sequence."""
  model = testing.load(SPEC, SPEC.variant("tiny").config, models["weights"],
                       SIGNATURES.kv_cache_max_len)
  tokens = [int(t) for t in np.random.default_rng(5).integers(0, 256, 37)]
  want = testing.zoo_logits(model, tokens, 64)
  run = runner.Runner(models["none"], backend=backend)
  called, call = [], run._backend.run  # pylint: disable=protected-access
  # pylint: disable=protected-access
  run._backend.run = lambda name, *args: (called.append(name), call(name, *args))[1]
  np.testing.assert_allclose(run.prefill(tokens)[0], want[-1], atol=1e-4, rtol=0)
  assert called == ["w16_prefill_16", "w32_prefill_16", "prefill_8"]
  assert run.window is None and set(run._backend.caches) == {None}
  np.testing.assert_allclose(run.decode(tokens[0]), testing.zoo_logits(
      model, tokens + tokens[:1], 64)[-1], atol=1e-4, rtol=0)  # the copied prefixes hold
  run.reset()
  called.clear()
  run.prefill(tokens[:5])
  np.testing.assert_allclose(run.prefill(tokens[5:14])[0], want[13], atol=1e-4, rtol=0)
  assert called == ["w16_prefill_8", "w16_prefill_8", "decode_w16"] and run.window == 16
  run.reset()
  called.clear()
  run.prefill(tokens[:10])
  # 5 more: no padded signature fits window 16's room of 6, and 5 tokens are more than the
  # runner decodes one by one: one chunk in window 32, and the next decode moves back.
  np.testing.assert_allclose(run.prefill(tokens[10:15])[0], want[14], atol=1e-4, rtol=0)
  np.testing.assert_allclose(run.decode(tokens[15]), want[15], atol=1e-4, rtol=0)
  assert called == ["w16_prefill_16", "w32_prefill_8", "decode_w16"] and run.window == 16


def test_the_windows_benchmark_decodes_in_each_window_and_over_the_full_cache(models, tmp_path):
  """tools/bench/windows.py's decode comparison runs each depth in the window the runner picks
  (16 for positions up to 15, 32 up to 31, then the full cache) against the full cache, leaves the
  runner's windows as they were, and its CLI refuses depths that leave no room."""
  from litezoo.tools.bench import windows  # pylint: disable=g-import-not-at-top
  run = runner.Runner(models["none"])
  found = windows.compare_decode(run, [4, 20, 40], steps=3, repeats=1, vocab=run.vocab_size)
  assert {d: r["window"] for d, r in found.items()} == {"4": 16, "20": 32, "40": None}
  assert all(r["window_tps"] > 0 and r["full_tps"] > 0 for r in found.values())
  assert run.windows == [16, 32]
  out = testing.run_tool("bench.windows", f"--tflite={models['none']}", "--lengths=none",
                         "--decode_depths=4,61", "--decode_steps=3", cwd=tmp_path)
  assert testing.one_line_error(out, "windows") == (
      "windows: error: --decode_depths [61] leave no room for 3 decode steps in the KV cache of "
      "64: use depths up to 60, or fewer --decode_steps")
  truncated = tmp_path / "truncated.tflite"
  truncated.write_bytes(pathlib.Path(models["none"]).read_bytes()[:100_000])
  out = testing.run_tool("bench.windows", f"--tflite={truncated}", "--lengths=none",
                         "--decode_depths=4", cwd=tmp_path)
  assert testing.one_line_error(out, "windows").startswith(
      f"windows: error: {truncated}: the LiteRT interpreter refuses it")


def test_both_kv_cache_layouts_give_the_same_logits(models):
  """The zoo exports the transposed layout; litert-torch's default must read back just as well.
  The default-layout file also has all-position prefill and no windows: the last-token graph and
  the windows give the same logits as the plain graph."""
  tokens = [int(t) for t in np.random.default_rng(2).integers(0, 256, 37)]
  transposed = runner.Runner(models["none"])
  default = runner.Runner(models["none-default-layout"])
  assert transposed.kv_cache_max_len == default.kv_cache_max_len == 64
  shapes = {name: list(spec[0]) for name, spec in transposed._backend.cache_spec.items()}  # pylint: disable=protected-access
  assert shapes["kv_cache_k_0"] == [1, 2, 64, 16] and shapes["kv_cache_v_0"] == [1, 2, 16, 64]
  assert default.prefill_all_logits and not transposed.prefill_all_logits
  got, got_greedy = _drive(transposed, tokens)
  want, want_greedy = _drive(default, tokens)
  assert got_greedy == want_greedy
  assert len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)


def test_a_rewound_cache_continues_like_pytorch_on_the_whole_sequence(models):
  model = testing.load(SPEC, SPEC.variant("tiny").config, models["weights"],
                       SIGNATURES.kv_cache_max_len)
  run = runner.Runner(models["none"])
  run.prefill([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12])
  run.position = 4  # keep 9 8 7 6, forget the rest
  tail = run.prefill([40, 41, 42], all_logits=True)
  np.testing.assert_allclose(
      tail, testing.zoo_logits(model, [9, 8, 7, 6, 40, 41, 42], 64)[4:], atol=1e-4, rtol=0)


def test_last_token_prefill_verify_and_windows_match_pytorch(models):
  """Prefill returns the last token's logits only (one row, padding or not, chunked or not, into
  a window or the full cache), prefill(all_logits) and verify every row through verify_4 and
  verify_8 (in windows 16 and 32, and on the full cache when the padded call would pass the
  window's end), and decode through windows 16 and 32 into the full cache: each against the re-authored PyTorch
  model on the whole sequence."""
  model = testing.load(SPEC, SPEC.variant("tiny").config, models["weights"],
                       SIGNATURES.kv_cache_max_len)
  tokens = [int(t) for t in np.random.default_rng(3).integers(0, 256, 45)]
  want = testing.zoo_logits(model, tokens, 64)
  run = runner.Runner(models["none"])
  assert run.prefill_windows == [16, 32]
  # Padded, exact, two signatures (each into window 16), chunked into window 32, chunked into the
  # full cache: each prompt goes into the smallest window that holds it.
  for length, window in ((3, 16), (8, 16), (11, 16), (20, 32), (37, None)):
    run.reset()
    got = run.prefill(tokens[:length])
    assert run.window == window, length
    assert got.shape == (1, want.shape[-1])
    np.testing.assert_allclose(got[0], testing.zoo_logits(model, tokens[:length], 64)[-1],
                               atol=1e-4, rtol=0)
  run.reset()
  run.prefill(tokens[:5])
  np.testing.assert_allclose(run.prefill(tokens[5:14])[0], want[13], atol=1e-4, rtol=0)
  assert run.window == 16  # 14 tokens: still in window 16 (9 = 8 + a token through decode_w16)
  np.testing.assert_allclose(run.prefill(tokens[14:30])[0], want[29], atol=1e-4, rtol=0)
  assert run.window == 32  # moved up with the 14 cached entries
  run.reset()
  np.testing.assert_allclose(run.prefill(tokens[:11], all_logits=True), want[:11], atol=1e-4,
                             rtol=0)
  run.reset()
  run.prefill(tokens[:5])
  for position in range(5, 45):  # windows 16 and 32, then the full cache
    np.testing.assert_allclose(run.decode(tokens[position]), want[position], atol=1e-4, rtol=0)
  run.position = 20
  np.testing.assert_allclose(run.verify(tokens[20:24]), want[20:24], atol=1e-4, rtol=0)
  assert run.window == 32
  run.position = 22  # keep two of the four: the cache goes on like the whole sequence
  np.testing.assert_allclose(run.decode(tokens[22]), want[22], atol=1e-4, rtol=0)
  # Verify lengths 4 and 8, each in the smallest window its padded call fits: 3 tokens at 29 pad
  # to 4 (33 > 32: the full cache); 4 at 28 fill window 32; 5 at 10 pad to 8 (18 > 16: window
  # 32); 3 at 10 pad to 4 (window 16). Each rewinds a cache the one before wrote.
  run.reset()
  run.prefill(tokens[:40])
  for start, count, window in ((29, 3, None), (28, 4, 32), (10, 5, 32), (10, 3, 16)):
    run.position = start
    np.testing.assert_allclose(run.verify(tokens[start:start + count]),
                               want[start:start + count], atol=1e-4, rtol=0)
    assert run.window == window, (start, count)
    np.testing.assert_allclose(run.decode(tokens[start + count]), want[start + count],
                               atol=1e-4, rtol=0)


def test_model_bytes_run_too_and_share_the_file_cache(models, cache_root):
  path = models["none"]
  from_file = runner.Runner(path)
  from_bytes = runner.Runner(path.read_bytes())
  reference = runner.Runner(path.read_bytes(), backend="interpreter")
  assert from_bytes.weight_cache_path == from_file.weight_cache_path
  tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5]
  np.testing.assert_allclose(from_bytes.prefill(tokens), reference.prefill(tokens), atol=1e-5,
                             rtol=0)


def _cache_files(cache_root: pathlib.Path) -> list[pathlib.Path]:
  directory = cache_root / "xnnpack"
  return sorted(directory.iterdir()) if directory.exists() else []


def test_the_weight_cache_is_written_once_and_reused(models, cache_root):
  path = models["dynamic_int8"]
  assert _cache_files(cache_root) == []
  first = runner.Runner(path)
  sha256 = manifest.Artifact.read(path).manifest.sha256
  assert _cache_files(cache_root) == [first.weight_cache_path]  # no temp file left behind
  assert first.weight_cache_path.name.startswith(sha256 + ".litert-")
  assert runner.is_complete_weight_cache(first.weight_cache_path)
  before = first.weight_cache_path.stat()

  second = runner.Runner(path)
  assert second.weight_cache_path == first.weight_cache_path
  assert _cache_files(cache_root) == [first.weight_cache_path]
  after = first.weight_cache_path.stat()
  assert (after.st_ino, after.st_mtime_ns, after.st_size) == \
      (before.st_ino, before.st_mtime_ns, before.st_size)
  np.testing.assert_array_equal(second.prefill([1, 2, 3]), first.prefill([1, 2, 3]))


def test_a_half_written_cache_file_is_rebuilt_beside_it_not_in_place(models, cache_root):
  path = models["none"]
  final = runner.weight_cache_file(manifest.Artifact.read(path).manifest.sha256)
  final.parent.mkdir(parents=True)
  final.write_bytes(bytes(4096))  # what a crash mid-build leaves: a zero (invalid) header
  inode = final.stat().st_ino
  run = runner.Runner(path)
  assert run.weight_cache_path == final and runner.is_complete_weight_cache(final)
  assert final.stat().st_ino != inode  # replaced by rename: a process mapping the old one is safe
  np.testing.assert_allclose(run.prefill([7, 7, 7]),
                             runner.Runner(path, backend="interpreter").prefill([7, 7, 7]),
                             atol=1e-5, rtol=0)


def test_stale_temp_files_of_killed_builds_are_removed(models, cache_root):
  path = models["none"]
  final = runner.weight_cache_file(manifest.Artifact.read(path).manifest.sha256)
  final.parent.mkdir(parents=True)
  stale, fresh = (final.parent / f".{final.name}.{n}.partial" for n in ("old", "new"))
  for f in (stale, fresh):
    f.write_bytes(b"x")
  two_hours_ago = time.time() - 7200
  os.utime(stale, (two_hours_ago, two_hours_ago))
  runner.Runner(path)
  assert not stale.exists() and fresh.exists()  # a build still running elsewhere keeps its file


def test_concurrent_first_starts_both_work_and_publish_one_file(models, cache_root):
  script = ("import sys; from litezoo.runtime import runner; "
            "print(runner.Runner(sys.argv[1]).prefill([5, 6, 7])[-1].argmax())")
  env = {**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT)}
  procs = [subprocess.Popen([sys.executable, "-c", script, str(models["dynamic_int8"])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
  want = runner.Runner(models["dynamic_int8"], backend="interpreter").prefill([5, 6, 7])[-1]
  assert [out.strip() for out, _ in outs] == [str(want.argmax())] * 2
  files = _cache_files(cache_root)
  assert len(files) == 1 and runner.is_complete_weight_cache(files[0])


def test_an_unusable_cache_directory_falls_back_to_memory(models, cache_root, monkeypatch):
  blocker = cache_root.parent / "a_file"
  blocker.write_text("not a directory")
  monkeypatch.setenv("LITEZOO_CACHE", str(blocker / "cache"))
  run = runner.Runner(models["none"])
  assert run.weight_cache_path is None
  np.testing.assert_allclose(run.prefill([1, 2]),
                             runner.Runner(models["none"], backend="interpreter").prefill([1, 2]),
                             atol=1e-5, rtol=0)


def test_weight_cache_off_writes_nothing(models, cache_root):
  assert runner.Runner(models["none"], weight_cache=False).weight_cache_path is None
  assert _cache_files(cache_root) == []


def test_errors_name_the_problem(models):
  with pytest.raises(ValueError, match="unknown runner backend 'gpu'; choose one of compiled, "
                                       "interpreter"):
    runner.Runner(models["none"], backend="gpu")
  run = runner.Runner(models["none"])
  with pytest.raises(ValueError, match="65 tokens do not fit the KV cache of 64"):
    run.prefill(list(range(65)))
  run.prefill(list(range(64)))
  with pytest.raises(ValueError, match="the KV cache of 64 tokens is full"):
    run.decode(1)
  for backend in runner.BACKENDS:
    run = runner.Runner(models["none"], backend=backend)
    with pytest.raises(ValueError, match="token id 256 is outside the vocabulary of 256: tokenize "
                                         "with this model's tokenizer"):
      run.prefill([1, 256])
    run.prefill([1, 2, 3])
    with pytest.raises(ValueError, match="token id -1 is outside the vocabulary of 256"):
      run.decode(-1)
    with pytest.raises(ValueError, match="position 4 is not a rewind: the cache holds 3 tokens; "
                                         "set a position from 0 to 3"):
      run.position = 4
    with pytest.raises(ValueError, match="position must be an integer, got 2.5"):
      run.position = 2.5
    with pytest.raises(ValueError, match="token ids must be integers, got 5.7: tokenize"):
      run.decode(5.7)
    with pytest.raises(ValueError, match="token ids must be integers, got True"):
      run.prefill([True])
    with pytest.raises(ValueError, match="tokens must be a sequence of token ids, got 5"):
      run.verify(5)
    with pytest.raises(ValueError, match="verify needs at least one token"):
      run.verify([])
    run.position = 1  # a rewind
    assert run.position == 1 and run.decode(np.int64(5)).shape == (256,)
    assert run.prefill(np.array([4, 5])).shape == (1, 256) and run.position == 4


def test_running_a_model_does_not_import_torch():
  """torch costs ~180 MiB of resident memory and a second to import: the runtime path (the runner,
  generation, the bundles, the pipeline up to a cached artifact, the generate tool) must not pull
  it in."""
  assert testing.torch_modules_imported_by(
      "litezoo.runtime.runner", "litezoo.runtime.generate", "litezoo.artifacts.bundle",
      "litezoo.pipeline", "litezoo.tools.generate") == []
