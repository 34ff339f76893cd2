"""tools/explore end to end: the overlays against verify's own numbers, the server on loopback, the
page in headless Chromium (Debian's), and a clean stop on Ctrl-C.

One tool run serves every test here (a tiny TinyLlama with layer 1 perturbed, dynamic_int8): it
writes its node data with --node_data_dir and keeps serving until the last test sends SIGINT.
The browser test runs when LITEZOO_BROWSER_TESTS=1 (tests/BUILD sets it; about 20 s);
LITEZOO_EXPLORE_SCREENSHOT=PATH also saves the README's screenshot there.
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import requests
import torch

from litezoo import pipeline
from litezoo.conversion import export
from litezoo.conversion.litert import export_config
from litezoo.core import registry
from litezoo.reference import compare as verify
from litezoo.tests import testing
from litezoo.tools.explorer import overlays as explore

CORRUPT = 1  # of 2 layers: layer 0 must stay clean, layer 1 must be the first bad one
BROWSER = os.environ.get("LITEZOO_BROWSER_TESTS") == "1"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """The running tool: (url, node-data dir, process, stdout lines so far)."""
  work = tmp_path_factory.mktemp("explore")
  env = {**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT), "PYTHONUNBUFFERED": "1",
         "LITEZOO_CACHE": str(work / "cache")}
  proc = subprocess.Popen(
      [sys.executable, "-m", "litezoo.tools.explore", "--model=tinyllama", "--variant=tiny",
       "--quantize=dynamic_int8", f"--corrupt_layer={CORRUPT}", "--no_browser",
       "--prefill_seq_lens=16", "--kv_cache_max_len=128", "--verify_lengths=none",
       f"--port={_free_port()}", f"--node_data_dir={work / 'node_data'}"],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  deadline = time.monotonic() + 600
  url = None
  while url is None and time.monotonic() < deadline:
    line = proc.stdout.readline()
    if not line and proc.poll() is not None:
      break
    lines.append(line)
    if line.startswith("http://127.0.0.1:"):
      url = line.strip()
  assert url, "the tool never printed its address:\n" + "".join(lines[-60:])
  yield url, work / "node_data", proc, lines
  if proc.poll() is None:
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def expected():
  """verify's per-layer numbers for the same setup, computed here from scratch: the checkpoint
  transformers writes for seed 0, layer 1 perturbed the way the tool does, the same prompt.
  Returns (rows, the perturbed re-authored model)."""
  spec = registry.default_registry().get("tinyllama")
  config = spec.variant("tiny").config
  del config
  weights = pipeline.weights(spec, "tiny", log=lambda _: None)
  original, model = pipeline.original_and_ours(spec, "tiny", weights, 128, log=lambda _: None)
  explore.corrupt_layer(model, CORRUPT, seed=0)
  prompt = pipeline.tokenizer(weights).encode("The capital of France is")
  return verify.per_layer(model, original, prompt, 128, verify.tolerance("none")[0]), model


def _load(directory: pathlib.Path, name: str) -> dict:
  return json.loads((directory / f"{name}.json").read_text())


def test_a_layer_the_model_does_not_have_is_refused():
  result = testing.run_tool("explore", "--model=tinyllama", "--variant=tiny", "--corrupt_layer=2",
                            "--no_browser")
  assert testing.one_line_error(result, "explore") == (
      "explore: error: --corrupt_layer=2 is not a layer of tinyllama-tiny: pass 0..1")


@pytest.mark.parametrize("args, message", [
    # Found by trials: an empty host served and then spun at 100% CPU, ignoring SIGTERM; another
    # machine's address was "no free port"; a file as --node_data_dir failed after converting.
    (("--host=",), "--host is empty: give an address (127.0.0.1, the default)"),
    (("--host=192.0.2.1",), "--host=192.0.2.1 is not an address of this machine"),
    (("--node_data_dir={file}",), "output directory {file} is a file, not a directory; choose "
     "another with --node_data_dir"),
])
def test_bad_host_and_node_data_dir_are_refused_before_converting(args, message, tmp_path):
  (tmp_path / "f").write_text("")
  args = [a.format(file=tmp_path / "f") for a in args]
  result = testing.run_tool("explore", "--model=tinyllama", "--variant=tiny", "--no_browser",
                            *args, env={"LITEZOO_CACHE": str(tmp_path / "cache")})
  assert testing.one_line_error(result, "explore").startswith(
      f"explore: error: {message.format(file=tmp_path / 'f')}")
  assert not (tmp_path / "cache" / "artifacts").exists()  # nothing was converted


def test_the_tool_reports_the_perturbed_layer(served):
  _, _, _, lines = served
  text = "".join(lines)
  assert f"first layer past tolerance: layer {CORRUPT}" in text
  assert re.search(r"^\| 0 \| .* \| yes \|$", text, re.M)  # layer 0 untouched


def test_divergence_node_data_is_verify_per_layer(served, expected):
  """Every PyTorch node inside block i carries verify's relative difference of block i; block
  membership checked here from torch.export's own module stack, not from the tool's namespaces."""
  _, directory, _, _ = served
  rows, model = expected
  assert [r.ok for r in rows] == [True, False]
  data = _load(directory, "pytorch_divergence")["graph"]
  root = export.converter_module(model, export_config.ExportConfig(output_logits_on_prefill=True))
  program = explore.export_program(root, model.config, 16, 128)
  checked = {0: 0, 1: 0}
  for node in program.graph.nodes:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [p for p, _ in stack.values()]
    layer = next((int(m.group(1)) for p in paths
                  if (m := re.fullmatch(r"model\.transformer_blocks\.(\d+)", p))), None)
    if layer is None:
      continue
    result = data["results"][node.name]
    np.testing.assert_allclose(result["value"], rows[layer].rel, rtol=1e-5)
    assert (result.get("bgColor") == explore.FIRST_BAD_COLOUR) == (layer == CORRUPT)
    checked[layer] += 1
  assert min(checked.values()) > 20  # both blocks' ops were found and checked
  assert data["thresholds"][0]["value"] == verify.tolerance("none")[0]


def test_divergence_reaches_the_tflite_ops_of_each_block(served, expected):
  """tflite node ids are operator indices. Each operator that reads a weight of block i (found
  here by content in the float conversion beside the served file, whose operators are the same)
  carries block i's number, in prefill and decode. (Tensor names are no oracle: the converter
  reuses one block's names for another's identical ops.)"""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  url, directory, _, _ = served
  rows, model = expected
  data = _load(directory, "tflite_divergence")
  config = json.loads(requests.utils.unquote(url.split("data=", 1)[1]))
  served_file = pathlib.Path(config["models"][1]["url"])
  # The float conversion it was quantized from, found in the artifact cache by its sha256.
  parent = json.loads(served_file.with_name(served_file.stem + ".manifest.json").read_text())[
      "conversion"]["quantized_from"]
  float_file = next(f for f in served_file.parent.parent.glob(f"*/{parent['file']}")
                    if hashlib.sha256(f.read_bytes()).hexdigest() == parent["sha256"])
  block_of = {p.detach().numpy().tobytes(): i for i, block in enumerate(model.transformer_blocks)
              for p in block.parameters()}
  raw = float_file.read_bytes()
  flat = schema.Model.GetRootAs(raw, 0)
  quantized = schema.Model.GetRootAs(served_file.read_bytes(), 0)
  for g in range(2):  # prefill_16, decode
    subgraph, name = flat.Subgraphs(g), flat.Subgraphs(g).Name().decode()
    assert subgraph.OperatorsLength() == quantized.Subgraphs(g).OperatorsLength()
    results = data[name]["results"]
    checked = {0: 0, 1: 0}
    for op in range(subgraph.OperatorsLength()):
      for t in subgraph.Operators(op).InputsAsNumpy():
        buffer = flat.Buffers(subgraph.Tensors(int(t)).Buffer()) if t >= 0 else None
        layer = block_of.get(buffer.DataAsNumpy().tobytes()) if buffer and buffer.DataLength() else None
        if layer is not None:
          np.testing.assert_allclose(results[str(op)]["value"], rows[layer].rel, rtol=1e-5)
          checked[layer] += 1
    assert min(checked.values()) >= 5, (name, checked)  # qkv, output, w1, w3, w2 at least


def test_quant_error_is_what_per_channel_int8_gives(served, expected):
  """Each weight's error, read back from the quantized flatbuffer, matches quantizing the float
  weight here by hand (symmetric int8, one scale per output channel)."""
  _, directory, _, _ = served
  _, model = expected
  data = _load(directory, "pytorch_quant_error")["graph"]["results"]
  params = dict(model.named_parameters())
  checked = 0
  for name, param in params.items():
    if param.dim() < 2:
      continue
    w = param.detach().float()
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    restored = torch.clamp(torch.round(w / scale), -127, 127) * scale
    expected = float((w - restored).norm() / w.norm())
    node = "p_model_" + name.replace(".", "_")
    np.testing.assert_allclose(data[node]["value"], expected, rtol=2e-2)
    checked += 1
  assert checked == 12  # embedding, LM head, 5 matrices in each of 2 blocks


def test_the_server_serves_both_models_and_their_overlays(served):
  url, _, _, _ = served
  base = url.split("/?")[0]
  assert requests.get(f"{base}/check_health", timeout=10).text == "model_explorer_ok"
  graphs = requests.get(f"{base}/api/v1/load_graphs_json", params={"graph_index": 0},
                        timeout=30).json()
  assert len(graphs["graphs"][0]["nodes"]) > 200
  config = json.loads(requests.utils.unquote(url.split("data=", 1)[1]))
  targets = config["nodeDataTargets"]
  assert targets == ["tinyllama-tiny.pytorch"] * 2 + ["tinyllama-tiny_dynamic_int8_ekv128.tflite"] * 2
  names = [re.match(r"node_data://(.*)/\d+$", s).group(1) for s in config["nodeData"]]
  assert set(names) == {explore.DIVERGENCE, explore.QUANT_ERROR}
  served_data = requests.get(f"{base}/api/v1/load_node_data", params={"node_data_index": 1},
                             timeout=10).json()
  assert "graph" in json.loads(served_data["content"])


def _red_and_green(path: pathlib.Path, box) -> tuple[np.ndarray, np.ndarray]:
  """Row numbers of the clearly red and clearly green pixels inside `box` (left, top, right,
  bottom). By hue, not exact colour: small nodes render darker, antialiased."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rgb = np.asarray(Image.open(path).convert("RGB").crop(box)).astype(int)
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  red = (r - g > 60) & (r - b > 60)
  green = (g - r > 12) & (g - b > 12)
  return np.nonzero(red)[0], np.nonzero(green)[0]


@pytest.mark.skipif(not BROWSER, reason="opt-in: LITEZOO_BROWSER_TESTS=1")
def test_chromium_shows_both_graphs_with_layer_1_in_red(served, tmp_path):
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  url, _, _, _ = served
  shot = pathlib.Path(os.environ.get("LITEZOO_EXPLORE_SCREENSHOT") or tmp_path / "explore.png")
  width, height = 1800, 1100
  # Chromium's profile holds a socket whose path must stay under 108 bytes: Bazel's test temp dir
  # is deeper than that, so the profile gets a short temp dir of its own, removed afterwards.
  profile = tempfile.mkdtemp(prefix="lz-chromium-", dir="/tmp")
  with sync_playwright() as p:
    browser = p.chromium.launch_persistent_context(
        profile, executable_path="/usr/bin/chromium", viewport={"width": width, "height": height},
        env={**os.environ, "TMPDIR": profile},
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--no-first-run"])
    try:
      page = browser.new_page()
      page.goto(url)
      page.wait_for_selector("canvas", timeout=60_000)
      page.get_by_text(explore.DIVERGENCE).first.wait_for(timeout=60_000)
      body = page.inner_text("body")
      assert "tinyllama-tiny.pytorch" in body and explore.QUANT_ERROR in body
      # The .tflite prefill graph beside the PyTorch graph, divergence shown, every layer open.
      page.get_by_text(re.compile(r"^\s*\d+ nodes\s*$")).first.click()  # the graph selector
      page.locator('[data-id="prefill_16"] .action-button').click()
      page.wait_for_function("document.querySelectorAll('canvas').length >= 2")
      assert "tinyllama-tiny_dynamic_int8_ekv128.tflite" in page.inner_text("body")
      providers = page.get_by_text(explore.DIVERGENCE)
      for i in range(providers.count()):
        providers.nth(i).click()
      page.locator(".hide-toggle").first.click()  # the left pane's info panel covers its graph
      for button in page.get_by_text("unfold_more_double", exact=True).all():
        button.click()
        time.sleep(2)
      for button in page.get_by_text("fit_screen", exact=True).all():
        button.click()
      time.sleep(3)
      page.mouse.move(5, height - 5)  # away from the buttons: their tooltips fade out
      time.sleep(2)
      shot.parent.mkdir(parents=True, exist_ok=True)
      page.screenshot(path=str(shot))
      table = page.inner_text("body")
    finally:
      browser.close()
      shutil.rmtree(profile, ignore_errors=True)
  # Panes split the width; the right pane's info panel (its table has red cells) is left out.
  panes = {"pytorch": (0, 110, width // 2 - 10, height), "tflite": (width // 2 + 10, 110, 1420, height)}
  for name, box in panes.items():
    red, green = _red_and_green(shot, box)
    assert len(red) > 300 and len(green) > 300, f"{name}: {len(red)} red, {len(green)} green ({shot})"
    # Layers are laid out top to bottom: layer 0 (clean, green) above layer 1 (first bad, red).
    assert np.median(green) < np.median(red), f"{name}: red is not below green ({shot})"
  assert re.search(r"0\.4\d+", table)  # layer 1's value in the node-data table


def test_ctrl_c_stops_the_server(served):
  url, _, proc, lines = served
  proc.send_signal(signal.SIGINT)
  rest, _ = proc.communicate(timeout=120)  # generous: a loaded 2-core machine is slow to exit
  assert proc.returncode == 0, "".join(lines[-20:]) + rest
  assert "server stopped" in rest
  with pytest.raises(requests.ConnectionError):
    requests.get(url.split("/?")[0] + "/check_health", timeout=5)
