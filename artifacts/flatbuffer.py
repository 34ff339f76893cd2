"""What a .tflite really holds: the storage type of every weight matrix, read from the flatbuffer.

The interpreter reports int4 tensors as int8, so this reads the model's own schema instead. It is
how the zoo proves a recipe took effect, and how it notices weights a recipe left in float32.
"""

import collections
import dataclasses
import os

import numpy as np

_MIN_ELEMENTS = 4096  # a weight matrix, not a bias, norm, scale table or small constant


@dataclasses.dataclass
class Weights:
  params_by_type: dict[str, int]  # weight-matrix elements by storage type (INT4, INT8, ...)
  float32_matrices: list[str]  # names of weight matrices left in float32
  # The largest weight matrix's shape (an LM's embedding table), how many buffers hold a matrix of
  # that shape, their storage types, and how many op inputs read them: a tied table quantized
  # once is {"buffers": 1, "uses": 2 x signatures}.
  largest_matrix: dict = dataclasses.field(default_factory=dict)

  def share(self, kind: str) -> float:
    total = sum(self.params_by_type.values())
    return self.params_by_type.get(kind, 0) / total if total else 0.0


def _values(raw: bytes, buffer) -> np.ndarray:
  """A float32 buffer's values: inside the flatbuffer, or (large models) at an offset after it."""
  if buffer.DataLength():
    return buffer.DataAsNumpy().view(np.float32)
  return np.frombuffer(raw, np.float32, count=buffer.Size() // 4, offset=buffer.Offset())


def weights(path: str | os.PathLike) -> Weights:
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    raw = f.read()
  model = schema.Model.GetRootAs(raw, 0)
  type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
  by_type = collections.Counter()
  left_float = []
  seen = set()  # signatures share weights: count each buffer once
  shapes = {}  # weight-matrix buffer -> (shape, storage type)
  for g in range(model.SubgraphsLength()):
    subgraph = model.Subgraphs(g)
    for i in range(subgraph.TensorsLength()):
      tensor = subgraph.Tensors(i)
      buffer = tensor.Buffer()
      if buffer in seen or tensor.ShapeLength() < 2:
        continue
      data = model.Buffers(buffer)
      if not (data.DataLength() or data.Size()):
        continue  # not a constant: an activation
      elements = 1
      for d in tensor.ShapeAsNumpy():
        elements *= int(d)
      if elements < _MIN_ELEMENTS:
        continue
      seen.add(buffer)
      kind = type_names.get(tensor.Type(), str(tensor.Type()))
      if kind == "FLOAT32":
        values = _values(raw, data)
        if (values < -1e30).any():
          continue  # masked (-inf or float-min) entries: the causal-mask cache, not a weight
        if np.all(np.abs(values) == abs(values[0])):
          continue  # +-1/sqrt(n) only: a Hadamard rotation the quantizer inserted, not a weight
      by_type[kind] += elements
      shapes[buffer] = (tuple(int(d) for d in tensor.ShapeAsNumpy()), kind)
      if kind == "FLOAT32":
        left_float.append(tensor.Name().decode())
  return Weights(dict(by_type), left_float, _largest(model, shapes))


def _largest(model, shapes: dict) -> dict:
  """The largest matrix shape's buffers, storage types and op inputs reading them."""
  if not shapes:
    return {}
  shape = max((s for s, _ in shapes.values()), key=lambda s: int(np.prod(s)))
  buffers = {b for b, (s, _) in shapes.items() if s == shape}
  uses = 0
  for g in range(model.SubgraphsLength()):
    subgraph = model.Subgraphs(g)
    for o in range(subgraph.OperatorsLength()):
      op = subgraph.Operators(o)
      inputs = (op.Inputs(j) for j in range(op.InputsLength()))
      uses += sum(1 for i in inputs if i >= 0 and subgraph.Tensors(i).Buffer() in buffers)
  return {"shape": list(shape), "buffers": len(buffers), "uses": uses,
          "types": sorted({shapes[b][1] for b in buffers})}
