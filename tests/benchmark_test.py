"""tools/benchmark on the tiny TinyLlama: the results' schema, the markdown regenerated from the
JSON, the PNG, skipped peers with their reason, and the helpers the figures rest on, each checked
against an independent reference (transformers, SentencePiece, the kernel's rusage, the files).
Speeds are not asserted: the real-size figures come from running the benchmark."""

import json
import os
import re
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from litezoo.tests import testing
from litezoo.tools.bench import measure, report, serving, speculative, weights

# The suites' shared signatures: the zoo's float file is //tests:tinyllama_tiny_float's.
TINY = ["--model=tinyllama", "--variant=tiny", *testing.TINY_FLAGS, "--depths=4,16",
        "--decode_tokens=3", "--repeats=2", "--ttft_prompt=8", "--bandwidth_mib=16"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  (out / "no-llama.cpp").mkdir()  # a directory without a build: llama.cpp's "skipped" row
  run = testing.run_tool("benchmark", *TINY, "--peers=zoo,torch,llamacpp",
                         f"--llamacpp_dir={out / 'no-llama.cpp'}", f"--output_dir={out}",
                         f"--work_dir={out / 'work'}")
  assert run.returncode == 0, run.stderr[-3000:]
  return out, json.loads((out / "tinyllama-tiny.json").read_text()), run


def test_results_hold_every_figure_for_each_peer_that_ran(results):
  _, r, _ = results
  assert r["schema"] == report.SCHEMA
  assert (r["model"], r["variant"], r["recipe"]) == ("tinyllama", "tiny", "dynamic_int8")
  assert r["plan"]["threads"] == 2 and r["plan"]["prefill_lengths"] == [8, 16]
  assert r["signatures"]["kv_layout"] == "transposed"  # the plugin's
  assert r["bandwidth"]["bytes_per_s"] > 0 and len(r["machine"]["load_average_start"]) == 3
  assert {"torch", "ai-edge-litert", "litert-torch", "python"} <= set(r["versions"])
  for name in ("zoo", "torch"):
    peer = r["peers"][name]
    assert peer["status"] == "ok", peer
    assert set(report.PEER_KEYS) <= set(peer)
    assert sorted(peer["prefill_tps"]) == ["16", "8"]
    assert sorted(peer["decode_tps"]) == ["16", "4"]
    assert all(v > 0 for v in [*peer["prefill_tps"].values(), *peer["decode_tps"].values()])
    # The recorded file size is the file's.
    size = peer["artifact"]["size_bytes"]
    if name == "zoo":
      assert size == pathlib.Path(peer["artifact"]["path"]).stat().st_size
    assert peer["decode_read_bytes"] == int(size * r["decode_read_fraction"])
    assert peer["rss_over_file"] == pytest.approx(peer["runtime_peak_rss_bytes"] / size)
    # Where the memory is at the end: at most the peak, and the runtime's own mappings in it.
    resident = peer["resident_bytes_by_mapping"]
    assert 0 < sum(resident.values()) <= peer["runtime_peak_rss_bytes"]
    assert resident["anonymous"] > 0 and resident["libraries"] > 0
  zoo = r["peers"]["zoo"]
  assert zoo["conversion"]["seconds"] > 0 and zoo["conversion"]["peak_rss_bytes"] > 0
  # The conversion's memory is the machine's: a float export in two processes counts both.
  from litezoo.artifacts import manifest  # pylint: disable=g-import-not-at-top
  records = [manifest.find(pathlib.Path(zoo["artifact"]["path"])).manifest.conversion]
  records.append(records[0].get("quantized_from", {}).get("conversion", {}))
  assert zoo["conversion"]["peak_rss_bytes"] == max(
      r.get("peak_rss_bytes", 0) + r.get("export_child_peak_rss_bytes", 0) for r in records)
  assert zoo["conversion"]["export_processes"] == max(r.get("export_processes", 1) for r in records)
  assert zoo["cold_start"]["weight_cache_bytes"] > 0  # the cold start wrote packed weights
  # The measured session maps the packed weights the cold start wrote (resident in whole pages).
  pages = -(-zoo["cold_start"]["weight_cache_bytes"] // os.sysconf("SC_PAGE_SIZE"))
  assert 0 < zoo["resident_bytes_by_mapping"]["weight cache"] <= (
      pages * os.sysconf("SC_PAGE_SIZE"))


def test_unavailable_peer_is_recorded_with_its_reason(results):
  _, r, _ = results
  llama = r["peers"]["llamacpp"]
  assert llama["status"] == "skipped"
  assert "setup_llamacpp.sh" in llama["reason"]
  target = {t["key"]: t for t in r["targets"]}
  assert set(target) == {key for key, _ in report.TARGETS}
  assert target["decode_vs_llamacpp"]["met"] is None
  zoo = r["peers"]["zoo"]
  assert target["rss_vs_file"]["measured"] == pytest.approx(
      max(zoo["runtime_peak_rss_bytes"], zoo["cold_start"]["runtime_peak_rss_bytes"])
      / zoo["artifact"]["size_bytes"])


def test_summary_is_flat_and_names_headline_figures(results):
  _, r, _ = results
  assert all(isinstance(v, (int, float, str)) for v in r["summary"].values())
  assert r["summary"]["zoo decode tok/s"] == round(report.headline_decode(r["peers"]["zoo"]), 2)
  assert "target rss_vs_file" in r["summary"]


def test_markdown_is_regenerated_from_the_json(results):
  out, r, _ = results
  table = (out / "tinyllama-tiny.md").read_text()
  assert table == report.markdown(r)
  run = testing.run_tool("benchmark", f"--markdown_from={out / 'tinyllama-tiny.json'}")
  assert run.returncode == 0, run.stderr
  assert run.stdout == table
  rows = [line for line in table.splitlines() if line.startswith("| zoo |") or
          line.startswith("| torch |")]
  assert len(rows) == 2 and "llamacpp: skipped" in table
  # A trial read an earlier run's conversion time as this run's: the cell says which it is.
  conversion = r["peers"]["zoo"]["conversion"]
  assert ("(an earlier run)" in rows[0]) == conversion["reused"]
  assert ("(2 processes)" in rows[0]) == (conversion["export_processes"] == 2)
  resident = r["peers"]["zoo"]["resident_bytes_by_mapping"]
  shown = re.search(r"by mapping \(MiB[^:]*\): zoo: ([^;]*);", table).group(1)
  assert shown == ", ".join(f"{kind} {report._mib(size)}" for kind, size in  # pylint: disable=protected-access
                            sorted(resident.items(), key=lambda i: -i[1]) if size)
  assert re.search(r"weight cache \d+\.\d\b", shown)  # a tiny model's cache, not "0"


def test_plot_is_a_png_with_three_panels(results):
  out, _, _ = results
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  pixels = image.imread(out / "tinyllama-tiny.png", format="png")
  assert pixels.shape[0] > 200 and pixels.shape[1] > 600


def test_progress_is_printed_while_it_runs(results):
  _, _, run = results
  assert "[1/3] zoo" in run.stderr and "decode at depth 16" in run.stderr


def test_unknown_peer_is_an_error():
  run = testing.run_tool("benchmark", "--model=tinyllama", "--variant=tiny", "--peers=zoo,vllm")
  assert testing.one_line_error(run, "benchmark").startswith(
      "benchmark: error: unknown --peers vllm; peers: zoo")


def test_random_checkpoint_tokenizer_matches_sentencepiece(tmp_path):
  import sentencepiece  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  weights.write_tokenizer(tmp_path, 300)
  sp = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
  hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
  text = "the quick brown fox,  42 times!\tCaf\u00e9"
  assert sp.get_piece_size() == 300 and len(hf) == 300
  assert hf(text, add_special_tokens=False).input_ids == sp.encode(text)
  assert hf(text).input_ids == [sp.bos_id()] + sp.encode(text)  # BOS first, as Llama's


def test_a_random_checkpoints_tokenizer_fits_the_logits_whatever_its_model_type(tmp_path,
                                                                              monkeypatch):
  """transformers loads Qwen2's tokenizer class for a qwen2 config, which adds <|endoftext|>: the
  random checkpoint's tokenizer still has exactly vocab_size tokens (the .litertlm bundle of a
  Qwen-shaped benchmark was refused: 151937 tokens for 151936 logits)."""
  import transformers  # pylint: disable=g-import-not-at-top
  from litezoo.sources import random_weights  # pylint: disable=g-import-not-at-top
  from litezoo.tests import family_configs  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path))
  for kind in ("qwen2", "llama3"):
    config = family_configs.TINY[kind]
    directory = random_weights.checkpoint(f"tiny-{kind}", config, log=lambda _: None)
    assert len(transformers.AutoTokenizer.from_pretrained(directory)) == config["vocab_size"]


@pytest.mark.parametrize("model, variant", [("tinyllama", "1.1b"), ("phi2", "2.7b"),
                                            ("smollm2", "135m")])
def test_decode_read_fraction_matches_transformers_parameter_counts(model, variant):
  """All weights but the embedding table (of which a step reads one row), unless the LM head is
  that table: Phi-2's 2-matrix MLP and biases and SmolLM2's tied head included."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from litezoo.core.registry import default_registry  # pylint: disable=g-import-not-at-top
  from litezoo.tools.bench import child  # pylint: disable=g-import-not-at-top
  spec = default_registry().get(model)
  config = dict(spec.variant(variant).config)
  with torch.device("meta"):
    reference = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config))
  params = {n: p.numel() for n, p in reference.named_parameters()}  # tied: counted once
  total = sum(params.values())
  embedding = reference.get_input_embeddings().weight.numel()
  tied = config.get("tie_word_embeddings", False)
  expected = (total - (0 if tied else embedding)) / total
  assert child.decode_read_fraction(spec, variant) == pytest.approx(expected, rel=1e-9)


def test_run_measured_reports_the_child_peak_rss():
  code = "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum())"
  done = measure.run_measured([sys.executable, "-c", code])
  assert done.returncode == 0 and float(done.stdout) == 300 * 2**20 // 8
  assert done.peak_rss_bytes > 300 * 2**20


def test_a_childs_peak_rss_is_not_its_parents():
  """Linux carries a parent's peak RSS into a child at exec: a small child of this (then big)
  process must still report its own, both through run_measured and from inside."""
  held = np.ones(400 * 2**20 // 8)  # this process now holds 400 MiB
  assert measure.peak_rss_bytes() > 400 * 2**20
  done = measure.run_measured(["/bin/true"])
  assert done.returncode == 0 and 0 < done.peak_rss_bytes < 50 * 2**20
  inside = measure.run_measured([sys.executable, "-c", "from litezoo.tools.bench import measure; "
                                 "print(measure.peak_rss_bytes())"], env=measure.child_env())
  assert 0 < int(inside.stdout) < 150 * 2**20 and held.sum() == 400 * 2**20 // 8


# What the ExecuTorch child runs in its own venv, which has numpy and torch but none of the zoo's
# other dependencies: the measuring protocol must not import them (pluggy came in through core).
_WITHOUT_THE_ZOOS_DEPENDENCIES = """
import sys
for name in ("pluggy", "absl", "ai_edge_litert", "sentencepiece", "transformers", "jinja2"):
  sys.modules[name] = None  # importing it raises ImportError
from litezoo.tools.bench import measure
class Session:  # a stand-in model: what measure_session drives
  kv_cache_max_len = 64
  def reset(self): pass
  def prefill(self, tokens): return measure.np.zeros(8, measure.np.float32)
  def decode(self, token): return measure.np.zeros(8, measure.np.float32)
plan = measure.Plan(threads=1, prefill_lengths=(4,), depths=(4,), decode_tokens=2, repeats=1,
                    ttft_prompt=4)
result = measure.measure_session(Session, plan, 8, "stand-in")
print(result["runtime_peak_rss_bytes"] > 0, bool(result["resident_bytes_by_mapping"]))
"""


def test_the_measuring_protocol_needs_none_of_the_zoos_other_dependencies():
  done = subprocess.run([sys.executable, "-c", _WITHOUT_THE_ZOOS_DEPENDENCIES],
                        env=measure.child_env(), capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split()[-2:] == ["True", "True"]


def test_run_measured_gives_the_command_its_own_code_and_default_signals(tmp_path):
  assert measure.run_measured(["/bin/false"]).returncode == 1
  assert measure.run_measured(["sh", "-c", "kill -TERM $$"]).returncode == 128 + 15
  missing = measure.run_measured(["/no/such/program"])
  assert missing.returncode == 127 and missing.peak_rss_bytes is None  # nothing ran
  (tmp_path / "plain").write_text("#!/bin/sh\n")
  assert measure.run_measured([str(tmp_path / "plain")]).returncode == 126  # not executable
  # The spawner is Python, which ignores SIGPIPE and SIGXFSZ; the command must not inherit that.
  status = measure.run_measured(["cat", "/proc/self/status"]).stdout
  ignored = int(re.search(r"SigIgn:\s+([0-9a-f]+)", status).group(1), 16)
  assert not ignored & (1 << 12) and not ignored & (1 << 24), status
  # Nor does the command's environment configure the spawner.
  env = {**measure.child_env(), "PYTHONINSPECT": "1"}
  assert measure.run_measured(["sh", "-c", "exit 4"], env=env).returncode == 4


def test_resident_memory_by_mapping_adds_up_to_the_kernels_rss(tmp_path):
  """The kernel's own total (VmRSS in /proc/self/status) against the per-mapping sum, and a
  model file read through a mapping is counted as one."""
  import mmap  # pylint: disable=g-import-not-at-top
  model = tmp_path / "m.gguf"
  model.write_bytes(np.arange(32 * 2**20 // 8, dtype=np.int64).tobytes())
  before = measure.resident_by_mapping()
  with open(model, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
    assert np.frombuffer(mapped, np.int64).sum() == (32 * 2**20 // 8) * (32 * 2**20 // 8 - 1) // 2
    during = measure.resident_by_mapping()
    status = pathlib.Path("/proc/self/status").read_text()
  vm_rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
  assert sum(during.values()) == pytest.approx(vm_rss, rel=0.05)
  assert during["model file"] - before.get("model file", 0) == pytest.approx(32 * 2**20, rel=0.01)
  assert during["libraries"] > 0 and during["anonymous"] > 0


def test_resident_memory_kinds_come_from_the_mapped_paths(tmp_path):
  smaps = tmp_path / "smaps"
  header = "7f00-7f10 r--p 00000000 fd:00 1 "
  entries = [("/c/ab.litert-2.3.0.xnnpack", 4), ("/m/x.tflite (deleted)", 2), ("[heap]", 8),
             ("", 1), ("/usr/lib/libm.so.6", 16), ("/venv/_pywrap.so", 32), ("/etc/x.json", 64),
             ("/memfd:XNNPack in-memory weight cache (deleted)", 128),
             ("/c/.ab.litert-2.3.0.xnnpack.k3j.partial", 256), ("/m/My Model.TFLITE", 512),
             ("/memfd:google_dlopen_12 (deleted)", 1024), ("/memfd:shm (deleted)", 2048),
             ("/dev/zero (deleted)", 4096), ("/etc/ld.so.cache", 8192), ("[anon:arena]", 16384),
             ("/m/caf\udce9.gguf", 32768)]
  smaps.write_bytes("".join(f"{header}{path}\nSize: 99 kB\nRss: {kib} kB\nVmFlags: rd\n"
                            for path, kib in entries).encode("utf-8", "surrogateescape")
                    + b"Rss:\n")  # a line without a value is skipped
  assert measure.resident_by_mapping(str(smaps)) == {
      "other files": (64 + 8192) * 1024, "libraries": (16 + 32 + 1024) * 1024,
      "anonymous": (8 + 1 + 2048 + 4096 + 16384) * 1024, "weight cache": (4 + 128 + 256) * 1024,
      "model file": (2 + 512 + 32768) * 1024}
  assert measure.resident_by_mapping(str(tmp_path / "absent")) == {}


def test_bandwidth_reads_the_whole_array():
  found = measure.memory_bandwidth(threads=2, mib=8, repeats=2)
  assert found["bytes_per_s"] > 0 and found["array_mib"] == 8
  assert np.isfinite(found["bytes_per_s"])


@pytest.mark.parametrize("flags, message", [
    (["--threads=0"], "--threads must be at least 1, got 0"),
    (["--threads=5000"], "--threads=5000 is more than the "),
    (["--decode_tokens=-3"], "--decode_tokens must be at least 1, got -3"),
    (["--kv_cache_max_len=64", "--prefill_seq_lens=8", "--depths=100"],
     "--depths=100 does not fit a KV cache of 64 with 32 decode tokens: use at most 30"),
    # A trial found these ignored, or failing only after the bandwidth test.
    (["--depths=-5"], "--depths must be at least 1, got -5"),
    # A trial: depth 0 ran every peer, then the zoo failed ("prefill needs at least one token").
    (["--depths=0,16"], "--depths must be at least 1, got 0"),
    (["--kv_cache_max_len=64", "--prefill_seq_lens=8", "--ttft_prompt=100"],
     "--ttft_prompt=100 is more than half the KV cache of 64: use at most 32"),
    (["--bandwidth_mib=-1"], "--bandwidth_mib must be at least 1, got -1"),
    (["--peers=zoo,zoo"], "--peers=zoo,zoo names a peer twice: name each once"),
    (["--llamacpp_dir=/nonexistent"], "--llamacpp_dir applies only with the llamacpp or "
     "llamacpp-gguf peer"),
    (["--peers=llamacpp", "--llamacpp_dir=/nonexistent"], "--llamacpp_dir=/nonexistent is not "
     "a directory: give the directory tools/setup_llamacpp.sh built into"),
    (["--output_dir="], "--output_dir is empty"),
    (["--prefill_seq_lens=8", "--kv_cache_max_len=4"], "must be between 1 and the kv cache"),
])
def test_options_past_the_model_limits_are_clear_errors(flags, message):
  peers = [] if any(f.startswith("--peers=") for f in flags) else ["--peers=zoo"]
  run = testing.run_tool("benchmark", "--model=tinyllama", "--variant=tiny", *peers, *flags)
  assert run.returncode == 2, run.stderr[-2000:]
  assert message in run.stderr


def test_no_peer_that_ran_is_an_error_and_writes_nothing(tmp_path):
  """A trial: --peers=llamacpp without a llama.cpp build exited 0 with an empty table."""
  (tmp_path / "no-build").mkdir()
  run = testing.run_tool("benchmark", *TINY, "--peers=llamacpp",
                         f"--llamacpp_dir={tmp_path / 'no-build'}",
                         f"--output_dir={tmp_path / 'out'}", f"--work_dir={tmp_path / 'work'}")
  line = testing.one_line_error(run, "benchmark")
  assert line.startswith("benchmark: error: no peer ran, so no results were written: llamacpp "
                         "skipped: ") and "tools/setup_llamacpp.sh" in line
  assert not (tmp_path / "out").exists()


def test_the_zoo_is_measured_without_torch_loaded():
  """The measuring child imports only its job's module: torch (180 MiB) would count in the zoo's
  runtime RSS though the zoo does not use it."""
  assert testing.torch_modules_imported_by("litezoo.tools.bench.child",
                                           "litezoo.tools.bench.zoo") == []


def test_an_empty_peer_list_and_a_work_dir_that_is_a_file_are_refused(tmp_path):
  (tmp_path / "a_file").write_text("")
  for flags, message in ((["--peers="], "--peers is empty: name peers"),
                         (["--peers=zoo", f"--work_dir={tmp_path / 'a_file'}"],
                          "is a file, not a directory; choose another with --work_dir"),
                         (["--peers=zoo", "--work_dir="], "--work_dir is empty: give a "
                          "directory")):
    run = testing.run_tool("benchmark", "--model=tinyllama", "--variant=tiny", *flags)
    assert message in testing.one_line_error(run, "benchmark"), run.stderr[-2000:]


def test_unknown_serving_peer_is_an_error():
  run = testing.run_tool("benchmark", "--model=smollm2", "--serving", "--serving_peers=zoo,vllm")
  assert testing.one_line_error(run, "benchmark").startswith(
      "benchmark: error: unknown --serving_peers vllm; peers: zoo")


BENCH = testing.RUNFILES_ROOT / "litezoo" / "docs" / "bench"


@pytest.mark.parametrize("name", sorted(p.name for p in BENCH.glob("*.json")
                                        if p.name.startswith(("serving-", "speculative-"))))
def test_the_readme_serving_and_speculative_tables_are_generated_from_the_committed_json(name):
  module = serving if name.startswith("serving-") else speculative
  readme = (testing.RUNFILES_ROOT / "litezoo" / "README.md").read_text()
  results = json.loads((BENCH / name).read_text())
  assert results["schema"] == module.SCHEMA
  assert module.markdown(results).strip() in readme
  assert module.conditions(results) in readme  # the figures with the load they were taken at
  assert results["machine"]["cpu"] in module.conditions(results)  # and the CPU they ran on
  assert (BENCH / name.replace(".json", ".png")).exists()


@pytest.mark.parametrize("name", sorted(p.name for p in BENCH.glob("serving-*.json")))
def test_each_serving_json_has_its_plot_beside_it_and_the_plot_is_redrawn_from_it(name, tmp_path):
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  committed = image.imread(BENCH / name.replace(".json", ".png"), format="png")
  serving.plot(json.loads((BENCH / name).read_text()), tmp_path / "again.png")
  again = image.imread(tmp_path / "again.png", format="png")
  assert committed.shape == again.shape and committed.shape[1] > 1000


def test_markdown_from_a_serving_json_prints_its_table_and_conditions(tmp_path):
  name = sorted(p.name for p in BENCH.glob("serving-*.json"))[0]
  results = json.loads((BENCH / name).read_text())
  run = testing.run_tool("benchmark", f"--markdown_from={BENCH / name}")
  assert run.returncode == 0, run.stderr
  assert run.stdout == serving.markdown(results) + "\n" + serving.conditions(results) + "\n"
  other = tmp_path / "other.json"
  other.write_text(json.dumps({"schema": "something-else"}))
  run = testing.run_tool("benchmark", f"--markdown_from={other}")
  assert testing.one_line_error(run, "benchmark").startswith(
      f"benchmark: error: {other} is not a benchmark result")


@pytest.mark.parametrize("name", sorted(p.name for p in BENCH.glob("*.json")
                                        if not p.name.startswith(("serving-", "speculative-"))))
def test_the_readme_tables_are_the_ones_generated_from_the_committed_json(name):
  """The README's figures are regenerated from docs/bench/*.json (every recipe measured), never
  typed by hand."""
  readme = (testing.RUNFILES_ROOT / "litezoo" / "README.md").read_text()
  results = json.loads((BENCH / name).read_text())
  assert results["schema"] == report.SCHEMA
  assert report.markdown(results).strip() in readme


def test_the_committed_figures_include_int8_and_a_4bit_recipe():
  measured = {json.loads(p.read_text())["recipe"] for p in BENCH.glob("tinyllama-1.1b*.json")}
  assert "dynamic_int8" in measured and any("int4" in r for r in measured), measured


def test_the_tools_the_benchmark_starts_are_in_its_runfiles():
  """`bazel run //tools:benchmark -- --serving` starts `python -m litezoo.tools.serve` (and
  bundle): those modules must be in the benchmark binary's runfiles, which this test's data
  (//tools:benchmark) brings. (They were not: "No module named litezoo.tools.serve".)"""
  tools = testing.RUNFILES_ROOT / "litezoo" / "tools"
  started = set()
  for source in (tools / "benchmark.py", *sorted((tools / "bench").glob("*.py"))):
    started |= set(re.findall(r'"-m", "litezoo\.tools\.(\w+)"', source.read_text()))
  assert {"serve", "bundle"} <= started
  assert [m for m in sorted(started) if not (tools / f"{m}.py").exists()] == []


@pytest.mark.parametrize("recipe, kind", [
    ("dynamic_int4_block32", "Q4_0"), ("dynamic_int4_block32:levels16", "Q4_0"),
    ("dynamic_int4_block32:gptq,embedding=int8", "Q4_0"), ("dynamic_int8:hadamard", "Q8_0"),
    ("dynamic_int4_channel:gptq:hadamard", "Q4_0"), ("dynamic_int4_block64", None)])
def test_llama_cpp_is_measured_on_the_type_of_the_recipes_layout(recipe, kind):
  from litezoo.tools.bench import llamacpp  # pylint: disable=g-import-not-at-top
  assert llamacpp.gguf_type(recipe) == kind


class _ChatOf:
  """A chat template in plain text over the tiny tokenizer (which has none); the prompt's last
  24 tokens, so that 24 more fit the tiny file's 64-token cache."""

  def __init__(self, tok):
    self.tok = tok

  def chat(self, messages):
    return self.tok.encode("".join(f"<{m['role']}>{m['content']}\n" for m in messages) +
                           "<assistant>")[-24:]


def test_speculative_measurement_on_the_tiny_model(tmp_path):
  """tools/bench/speculative.py on the suites' tiny float file: every task measured plain and
  with prompt lookup, greedy text equal to plain greedy's, the table, target, plot and
  --markdown_from regenerated from the JSON."""
  from litezoo import pipeline  # pylint: disable=g-import-not-at-top
  from litezoo.core import registry  # pylint: disable=g-import-not-at-top
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  from litezoo.runtime import generate, runner  # pylint: disable=g-import-not-at-top
  spec = registry.Registry().get("tinyllama")
  weights_ = pipeline.weights(spec, "tiny")
  artifact = pipeline.artifact(spec, "tiny", weights_, recipe="none",
                               signatures=testing.TINY_SIGNATURES)
  tok = pipeline.tokenizer(weights_)
  session = generate.Session(runner.Runner(artifact.path), set())  # no stops: full length
  lines = []
  found = speculative.run(session, _ChatOf(tok), pathlib.Path(recipes.__file__).parent / "data",
                          24, 2, 0.7, lines.append)
  assert set(found) == {"repeat", "quote_and_explain", "free"} and len(lines) == 6
  for task in found.values():
    greedy, sampled = task["greedy"], task["sampled"]
    assert greedy["same_text"], task  # speculation never changes greedy text
    assert greedy["generated_tokens"] == sampled["generated_tokens"] == 24
    for r in (greedy, sampled):
      assert r["plain_decode_tps"] > 0 and r["speculative_decode_tps"] > 0 and r["speedup"] > 0
      assert 0 <= r["acceptance"] <= 1 and r["tokens_per_call"] >= 1
  quoted = speculative.passage(pathlib.Path(recipes.__file__).parent / "data")
  assert quoted.startswith("Alice was beginning to get very tired of sitting by her sister on "
                           "the bank,") and quoted.endswith("close by her.")
  assert len(quoted.split()) >= 100 and quoted in speculative.tasks(
      pathlib.Path(recipes.__file__).parent / "data")["repeat"]
  data = {"schema": speculative.SCHEMA, "model": "tinyllama", "variant": "tiny",
          "recipe": "none", "threads": 2, "max_new_tokens": 24, "repeats": 2,
          "temperature": 0.7, "verify_length": 8, "verify_windows": [16, 32],
          "started": "2026-12-02T00:00:00+00:00",
          "load_average_start": [0.1, 0.1, 0.1], "results": found,
          "machine": measure.machine_at_end(), "seconds": 1.0}
  data["target"] = speculative.target(data)
  assert data["target"]["met"] == (found["repeat"]["greedy"]["speedup"] >= 1.8)
  table = speculative.markdown(data)
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  assert len(rows) == 1 + 6  # the header and one row per task and decoding
  assert "| repeat | greedy | 24 |" in table and "Target: extractive task" in table
  speculative.plot(data, tmp_path / "s.png")
  assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  (tmp_path / "s.json").write_text(json.dumps(data))
  run = testing.run_tool("benchmark", f"--markdown_from={tmp_path / 's.json'}")
  assert run.returncode == 0, run.stderr
  assert run.stdout == table + "\n" + speculative.conditions(data) + "\n"
  assert "verify_8 in windows 16, 32 and the full cache, at most 24 new tokens" in run.stdout


@pytest.mark.parametrize("flags, message", [
    (("--model=tinyllama", "--variant=tiny", "--speculative"),
     "tinyllama-tiny has no real weights; --speculative measures real answers"),
    (("--model=smollm2", "--speculative", "--serving"),
     "--serving and --speculative are two different measurements"),
    (("--model=smollm2", "--temperature=0.5"), "--temperature applies only to --speculative"),
    (("--model=smollm2", "--max_tokens=5"),
     "--max_tokens applies only to --serving or --speculative: drop it"),
    (("--model=smollm2", "--speculative", "--peers=llamacpp"),
     "--peers applies only to the peer benchmark, not to --speculative: drop it"),
    (("--model=smollm2", "--serving", "--depths=5"),
     "--depths applies only to the peer benchmark, not to --serving: drop it"),
    (("--model=smollm2", "--speculative", "--turns=3"),
     "--turns applies only to --serving, not to --speculative: drop it"),
    (("--model=smollm2", "--speculative", "--max_tokens=1"), "--max_tokens must be at least 2"),
    (("--model=smollm2", "--speculative=prompt_lookup"),
     "--speculative is on or off and takes no value such as 'prompt_lookup'"),
    (("--model=smollm2", "--speculative", "--temperature=0"),
     "--temperature must be above 0 (the sampled runs), got 0.0"),
])
def test_speculative_options_that_cannot_apply_are_refused(flags, message):
  run = testing.run_tool("benchmark", *flags)
  assert testing.one_line_error(run, "benchmark").startswith(f"benchmark: error: {message}")

