"""Model Explorer views of a zoo model: the torch.export graph and the converted .tflite, with the
zoo's own measurements overlaid as node data.

Two overlays, on both graphs:
  - layer divergence: each block's max |hidden-state diff| relative to the original (transformers),
    from verify's per-layer check, painted on every node of that block. The first block past the
    tolerance is red, the blocks after it (which inherit its error) orange.
  - weight quantization error: ||W - dequant(quant(W))|| / ||W|| of every weight in the quantized
    .tflite, read back from the flatbuffer and compared with the float conversion, painted on the
    weight's node and on the ops that use it.

Node ids are the ones Model Explorer's own adapters give (torch.export node names; tflite operator
indices, constants after them), so the graphs are converted here with the same adapters the server
runs. A node's block comes from its namespace, which both adapters build from the module path
(`<module>.<Class>_<attribute>` per level), or for a PyTorch parameter from its name.
"""

import dataclasses
import math
import mmap
import os
import pathlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from litezoo.core.errors import ZooError

# Relative weight error bands (int8 per-channel lands near 1%, int4 blocks of 32 near 10%).
QUANT_BANDS = ((1e-3, "#c8e6c9"), (2e-2, "#fff59d"), (5e-2, "#ffcc80"), (1e30, "#ef5350"))
OK_COLOUR, FIRST_BAD_COLOUR, DOWNSTREAM_COLOUR = "#c8e6c9", "#e53935", "#ffb74d"
DIVERGENCE = "layer divergence vs original (rel)"
QUANT_ERROR = "weight quantization error (rel)"


class ExploreError(ZooError, ValueError):
  pass


# --- which nodes belong to which block, which nodes are weights ------------------------------------

@dataclasses.dataclass(frozen=True)
class Block:
  index: int
  path: str  # parameter-name prefix inside the exported module, e.g. "model.transformer_blocks.3."
  segment: str  # its namespace level, e.g. "litert_torch.generative.layers.attention.TransformerBlock_3"


def blocks(root: nn.Module, model: nn.Module) -> list[Block]:
  """The transformer blocks of `model` as they appear inside the exported `root` module."""
  names = {id(m): n for n, m in root.named_modules()}
  found = []
  for i, block in enumerate(model.transformer_blocks):
    path = names[id(block)]
    cls = type(block)
    found.append(Block(i, path + ".", f"{cls.__module__}.{cls.__qualname__}_{path.rsplit('.', 1)[-1]}"))
  return found


def _attr(node: dict, key: str) -> str | None:
  return next((a["value"] for a in node.get("attrs", []) if a["key"] == key), None)


def _tensor_index(node: dict) -> int | None:
  for output in node.get("outputsMetadata", []):
    value = _attr(output, "tensor_index")
    if value is not None:
      return int(value)
  return None


def node_blocks(graph: dict, found: list[Block]) -> dict[str, int]:
  """node id -> block index, for the nodes inside a block."""
  by_segment = {b.segment: b.index for b in found}
  result = {}
  for node in graph["nodes"]:
    levels = node.get("namespace", "").split("/")
    index = next((by_segment[l] for l in levels if l in by_segment), None)
    target = _attr(node, "target")  # a PyTorch parameter placeholder: its name says its block
    if index is None and target is not None:
      index = next((b.index for b in found if target.startswith(b.path)), None)
    if index is not None:
      result[node["id"]] = index
  return result


def weight_nodes(graph: dict) -> dict[str, object]:
  """node id -> weight key: a parameter name (PyTorch placeholders) or (subgraph, tensor index)
  (tflite constants)."""
  result = {}
  for node in graph["nodes"]:
    target = _attr(node, "target")
    if node.get("namespace") == "inputs" and target is not None:
      result[node["id"]] = target
    elif node.get("label") == "pseudo_const" and "subgraphIndex" in graph:
      index = _tensor_index(node)
      if index is not None:
        result[node["id"]] = (int(graph["subgraphIndex"]), index)
  return result


# --- weight quantization error, from the flatbuffers ----------------------------------------------

def _open(path: str | os.PathLike):
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    raw = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
  return raw, schema.Model.GetRootAs(raw, 0), schema


def _bytes(raw, model, tensor) -> memoryview | None:
  """A constant tensor's bytes: inside the flatbuffer, or (large models) at an offset after it."""
  buffer = model.Buffers(tensor.Buffer())
  if buffer.DataLength():
    return memoryview(buffer.DataAsNumpy())
  if buffer.Size():
    return memoryview(raw)[buffer.Offset():buffer.Offset() + buffer.Size()]
  return None


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
  """Per-channel values shaped to broadcast along `axis` of an `ndim`-d tensor."""
  shape = [1] * ndim
  shape[axis] = -1
  return values.reshape(shape)


def dequantized(raw, model, schema, subgraph, tensor) -> np.ndarray | None:
  """A constant weight's values as float32 (dequantized when stored quantized), None if its storage
  type is not one the zoo's recipes produce."""
  data = _bytes(raw, model, tensor)
  if data is None:
    return None
  shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
  kind, types = tensor.Type(), schema.TensorType
  if kind == types.FLOAT32:
    return np.frombuffer(data, np.float32).reshape(shape)
  if kind == types.FLOAT16:
    return np.frombuffer(data, np.float16).astype(np.float32).reshape(shape)
  if kind == types.INT8:
    ints = np.frombuffer(data, np.int8).astype(np.float32).reshape(shape)
  elif kind == types.INT4:  # two per byte, low nibble first, two's complement
    packed = np.frombuffer(data, np.uint8)
    nibbles = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(-1)[:math.prod(shape)]
    ints = ((nibbles.astype(np.int16) ^ 8) - 8).astype(np.float32).reshape(shape)
  else:
    return None
  q = tensor.Quantization()
  if q is None:
    return None
  if q.DetailsType() == schema.QuantizationDetails.BlockwiseQuantization:
    details = schema.BlockwiseQuantization()
    details.Init(q.Details().Bytes, q.Details().Pos)
    scales = dequantized(raw, model, schema, subgraph, subgraph.Tensors(details.Scales()))
    block = details.BlockSize()
    blocked = ints.reshape(shape[0], -1, block) * scales.reshape(shape[0], -1, 1)
    return blocked.reshape(shape)
  if not q.ScaleLength():
    return None
  scales = q.ScaleAsNumpy().astype(np.float32)
  zeros = (q.ZeroPointAsNumpy().astype(np.float32) if q.ZeroPointLength()
           else np.zeros_like(scales))
  axis = q.QuantizedDimension() if scales.size > 1 else 0
  return (ints - _along(zeros, axis, len(shape))) * _along(scales, axis, len(shape))


def weight_errors(float_path: str | os.PathLike,
                  quantized_path: str | os.PathLike) -> dict[tuple[int, int], float]:
  """(subgraph, tensor index) -> relative error of every weight matrix the recipe changed.

  The quantizer keeps tensor indices, so each tensor is compared with the same index in the float
  conversion (names and shapes are checked). Shared weights are computed once.
  """
  float_raw, float_model, schema = _open(float_path)
  quant_raw, quant_model, _ = _open(quantized_path)
  errors, by_buffer = {}, {}
  for g in range(min(float_model.SubgraphsLength(), quant_model.SubgraphsLength())):
    fsub, qsub = float_model.Subgraphs(g), quant_model.Subgraphs(g)
    for i in range(fsub.TensorsLength()):
      ft = fsub.Tensors(i)
      if ft.ShapeLength() < 2 or ft.Type() != schema.TensorType.FLOAT32:
        continue
      if i >= qsub.TensorsLength():
        continue
      qt = qsub.Tensors(i)
      if qt.Name() != ft.Name() or list(qt.ShapeAsNumpy()) != list(ft.ShapeAsNumpy()):
        continue
      if qt.Type() == schema.TensorType.FLOAT32:
        continue  # left in float (activations, or weights the recipe does not touch)
      if ft.Buffer() not in by_buffer:
        original = dequantized(float_raw, float_model, schema, fsub, ft)
        restored = dequantized(quant_raw, quant_model, schema, qsub, qt)
        if original is None or restored is None:
          continue
        norm = float(np.linalg.norm(original))
        by_buffer[ft.Buffer()] = float(np.linalg.norm(original - restored)) / max(norm, 1e-12)
      errors[(g, i)] = by_buffer[ft.Buffer()]
  return errors


def parameter_errors(root: nn.Module, float_path: str | os.PathLike,
                     errors: dict[tuple[int, int], float]) -> dict[str, float]:
  """parameter name -> the error of the float .tflite tensor holding exactly its values."""
  raw, model, schema = _open(float_path)
  by_content = {}
  for (g, i), error in errors.items():
    subgraph = model.Subgraphs(g)
    data = _bytes(raw, model, subgraph.Tensors(i))
    by_content[bytes(data)] = error
  result = {}
  for name, param in root.named_parameters():
    if param.dim() >= 2:
      content = param.detach().float().contiguous().numpy().tobytes()
      if content in by_content:
        result[name] = by_content[content]
  return result


# --- node data --------------------------------------------------------------------------------------

def _node_data():
  from model_explorer import node_data_builder  # pylint: disable=g-import-not-at-top
  return node_data_builder


def divergence_data(graphs: dict, found: list[Block], layers, tolerance: float):
  """Each block's verify number on every node of that block; the first block past `tolerance` red."""
  ndb = _node_data()
  rel = {row.layer: row.rel for row in layers}
  first_bad = next((row.layer for row in layers if not row.ok), None)
  data = {}
  for graph in graphs["graphs"]:
    results = {}
    for node_id, index in node_blocks(graph, found).items():
      if index in rel:
        colour = FIRST_BAD_COLOUR if index == first_bad else None
        results[node_id] = ndb.NodeDataResult(value=rel[index], bgColor=colour)
    if results:
      data[graph["id"]] = ndb.GraphNodeData(results=results, thresholds=[
          ndb.ThresholdItem(value=tolerance, bgColor=OK_COLOUR),
          ndb.ThresholdItem(value=1e30, bgColor=DOWNSTREAM_COLOUR)])
  return ndb.ModelNodeData(graphsData=data)


def quant_error_data(graphs: dict, errors: dict):
  """Each weight's error on its node and on the ops that read it (the largest, if several)."""
  ndb = _node_data()
  data = {}
  for graph in graphs["graphs"]:
    values = {node_id: errors[key] for node_id, key in weight_nodes(graph).items()
              if key in errors}
    for node in graph["nodes"]:
      used = [values[e["sourceNodeId"]] for e in node.get("incomingEdges", [])
              if e["sourceNodeId"] in values]
      if used and node["id"] not in values:
        values[node["id"]] = max(used)
    if values:
      data[graph["id"]] = ndb.GraphNodeData(
          results={k: ndb.NodeDataResult(value=v) for k, v in values.items()},
          thresholds=[ndb.ThresholdItem(value=v, bgColor=c) for v, c in QUANT_BANDS])
  return ndb.ModelNodeData(graphsData=data)


# --- graphs ------------------------------------------------------------------------------------------

def export_program(root: nn.Module, model_config, prefill_len: int, kv_cache_max_len: int):
  """torch.export of the prefill signature the converter traces."""
  from litezoo.conversion.litert import kv_cache  # pylint: disable=g-import-not-at-top
  cache = kv_cache.KVCache.from_model_config(kv_cache_max_len, model_config)
  return torch.export.export(root, (), {
      "tokens": torch.zeros((1, prefill_len), dtype=torch.int32),
      "input_pos": torch.arange(0, prefill_len, dtype=torch.int32),
      "kv_cache": cache,
  })


def pytorch_graphs(program) -> dict:
  """The graph Model Explorer shows for an ExportedProgram, by its own adapter."""
  # pylint: disable=g-import-not-at-top
  from model_explorer.consts import DEFAULT_SETTINGS
  from model_explorer.pytorch_exported_program_adapter_impl import PytorchExportedProgramAdapterImpl
  from model_explorer.utils import convert_adapter_response
  return convert_adapter_response(PytorchExportedProgramAdapterImpl(program, DEFAULT_SETTINGS).convert())


def tflite_graphs(path: str | os.PathLike) -> dict:
  """The graphs Model Explorer shows for a .tflite file (one per signature and composite)."""
  from model_explorer import extension_manager  # pylint: disable=g-import-not-at-top
  manager = extension_manager.ExtensionManager([])
  manager.load_extensions()
  response = manager.run_cmd({"extensionId": "builtin_tflite_flatbuffer", "cmdId": "convert",
                              "modelPath": str(path), "settings": {},
                              "deleteAfterConversion": False})
  if "error" in response:
    raise RuntimeError(f"Model Explorer could not read {path}: {response['error']}")
  return {"graphs": [g for c in response["graphCollections"] for g in c["graphs"]]}


def corrupt_layer(model: nn.Module, index: int, scale: float = 0.5, seed: int = 0) -> None:
  """Adds noise of `scale` times each weight matrix's spread to block `index`: a fault to find."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for param in model.transformer_blocks[index].parameters():
      if param.dim() >= 2:
        param.add_(torch.randn(param.shape, generator=generator) * param.std() * scale)


# --- everything the explorer shows, from a registered model ------------------------------------------

@dataclasses.dataclass
class Exploration:
  program: object  # torch.export ExportedProgram of the prefill signature
  pytorch_graphs: dict
  tflite: pathlib.Path  # the converted model, with the chosen recipe
  tflite_graphs: dict
  report: object  # verify.Report, per-layer rows included
  weight_errors: dict[tuple[int, int], float]  # (subgraph, tensor) -> rel error; {} for float
  parameter_errors: dict[str, float]  # exported parameter name -> rel error
  divergence: dict[str, object]  # "pytorch" / "tflite" -> ModelNodeData
  quant_error: dict[str, object]


def prepare(selection, *, work_dir: pathlib.Path, corrupt: int | None = None,
            decode_steps: int = 4, log: Callable[[str], None] = print) -> Exploration:
  """Loads the original and the re-authored model from one checkpoint, converts (through the
  artifact cache), verifies per layer, exports, and builds both overlays. `corrupt` perturbs one
  block of the re-authored model (and so of its conversion) to show what a broken layer looks
  like. Raises ExploreError naming a bad layer or length."""
  spec, variant, recipe, signatures = (selection.spec, selection.variant, selection.recipe,
                                       selection.signatures)
  del work_dir  # every file lives in the artifact cache
  layers = spec.variant(variant).config["num_hidden_layers"]
  if corrupt is not None and not 0 <= corrupt < layers:
    raise ExploreError(f"--corrupt_layer={corrupt} is not a layer of {spec.name}-{variant}: pass "
                       f"0..{layers - 1}")
  # Imported only after the checks: the Generative API takes seconds to import.
  # pylint: disable=g-import-not-at-top
  from litezoo import pipeline
  from litezoo.conversion.litert import export_config
  from litezoo.conversion import export
  from litezoo.reference import compare
  from litezoo.runtime import runner
  kv_cache_max_len = signatures.kv_cache_max_len
  prefill_len = min(signatures.prefill_seq_lens)
  weights = selection.weights
  prompt = pipeline.tokenizer(weights, log).encode("The capital of France is")
  if len(prompt) + decode_steps > kv_cache_max_len:
    raise ExploreError(f"the prompt ({len(prompt)} tokens + {decode_steps} decode steps) must fit "
                       f"--kv_cache_max_len={kv_cache_max_len}")
  log("loading the original (transformers) and the re-authored model ...")
  original, model = pipeline.original_and_ours(spec, variant, weights, kv_cache_max_len, log)
  transform = None
  if corrupt is not None:
    transform = pipeline.Transform(f"corrupt_layer={corrupt}",
                                   lambda m: corrupt_layer(m, corrupt))
    transform.apply(model)
    log(f"perturbed the weights of layer {corrupt} of the re-authored model (--corrupt_layer)")
  log("converting (or reusing the cached conversion) ...")
  float_artifact = pipeline.artifact(spec, variant, weights, recipe="none", signatures=signatures,
                                     transform=transform, log=log)
  quantized = pipeline.artifact(spec, variant, weights, recipe=recipe, signatures=signatures,
                                transform=transform, log=log)
  log(f"verifying against the original, per layer ({len(prompt)}-token prompt) ...")
  report = compare.verify(model, original, [prompt], decode_steps, kv_cache_max_len,
                          converted=runner.Runner(quantized.path), recipe=recipe, layers=True,
                          log=lambda _: None)
  log("exporting the PyTorch graph (torch.export) ...")
  root = export.converter_module(model, export_config.ExportConfig(output_logits_on_prefill=True))
  program = export_program(root, model.config, prefill_len, kv_cache_max_len)
  found = blocks(root, model)
  log("building the graphs and the overlays ...")
  float_path, quantized_path = float_artifact.path, quantized.path
  graphs = {"pytorch": pytorch_graphs(program), "tflite": tflite_graphs(quantized_path)}
  errors = weight_errors(float_path, quantized_path) if quantized_path != float_path else {}
  by_param = parameter_errors(root, float_path, errors)
  tolerance = report.rel_tolerance["pytorch"]
  return Exploration(
      program=program, pytorch_graphs=graphs["pytorch"], tflite=quantized_path,
      tflite_graphs=graphs["tflite"], report=report, weight_errors=errors,
      parameter_errors=by_param,
      divergence={k: divergence_data(g, found, report.layers, tolerance) for k, g in graphs.items()},
      quant_error={"pytorch": quant_error_data(graphs["pytorch"], by_param),
                   "tflite": quant_error_data(graphs["tflite"], errors)})


def config(spec, variant: str, found: Exploration):
  """Model Explorer's config: the PyTorch graph first, then the .tflite, each with both overlays."""
  import model_explorer  # pylint: disable=g-import-not-at-top
  cfg = model_explorer.config()
  pytorch_name = f"{spec.name}-{variant}.pytorch"
  cfg.add_model_from_pytorch(pytorch_name, exported_program=found.program)
  cfg.add_model_from_path(str(found.tflite))
  for model, name in (("pytorch", pytorch_name), ("tflite", found.tflite.name)):
    cfg.add_node_data(DIVERGENCE, found.divergence[model], model_name=name)
    if found.weight_errors:
      cfg.add_node_data(QUANT_ERROR, found.quant_error[model], model_name=name)
  return cfg


# --- serving -----------------------------------------------------------------------------------------

def check_host(host: str) -> None:
  """Raises ExploreError when `host` is not an address of this machine (a name that does not
  resolve, or another machine's address)."""
  _free_port(host, 0)


def _free_port(host: str, first: int) -> int:
  """The first port from `first` up that nothing listens on (Model Explorer's own rule); 0 asks
  the system for any."""
  import errno  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top
  for port in range(first, first + 100):
    with socket.socket() as probe:
      try:
        probe.bind((host, port))
        return port
      except OSError as e:
        if e.errno != errno.EADDRINUSE:  # a port taken is the only reason to try the next
          raise ExploreError(f"--host={host} is not an address of this machine "
                             f"({e.strerror or e}): use 127.0.0.1 (the default) or one of its "
                             "network interfaces' addresses") from e
  raise ExploreError(f"no free port from {first} to {first + 99} on {host}: pass --port")


def serve(config, host: str, port: int, open_browser: bool,
          log: Callable[[str], None] = print, out: Callable[[str], None] = print) -> None:
  """Serves until Ctrl-C; prints (with `out`) the page's address once the server answers.

  Model Explorer asks PyPI for a newer version from a non-daemon thread (and again for every
  page); offline that can hang the exit, so the check is turned off."""
  import socket  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  import model_explorer  # pylint: disable=g-import-not-at-top
  from model_explorer import server  # pylint: disable=g-import-not-at-top
  server._check_new_version = lambda print_msg=True: {  # pylint: disable=protected-access
      "version": "", "runningVersion": "", "releaseUrl": "", "desktopAppUrl": ""}
  port = _free_port(host, port)
  url = f"http://{host}:{port}/?data={config.to_url_param_value()}"

  def announce():
    for _ in range(600):
      with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
          out(url)
          log("Ctrl-C stops the server")
          return
      time.sleep(0.1)

  threading.Thread(target=announce, daemon=True).start()
  model_explorer.visualize_from_config(config=config, host=host, port=port,
                                       no_open_in_browser=not open_browser)
