"""Writes each distinct vector of a .tflite's flatbuffer once.

The converter and ai-edge-quantizer serialize every signature's subgraph on its own. The weights
are shared (one buffer each), but every subgraph keeps its own copy of each weight tensor's
quantization parameters: a float32 scale and an int64 zero point per output channel of a
per-channel weight, 12 bytes per channel per signature. On TinyLlama 1.1B `dynamic_int8` that is
about 5 MiB per signature (426k channels), more than its graph, and a model with decode and
prefill windows has eleven signatures. A flatbuffer field is an offset, so many fields may point
at one vector (flatbuffers' own `CreateSharedString` does this for strings): `share_vectors`
re-packs the model with a builder that writes each distinct vector (scales, zero points, shapes,
index lists, strings) once and moves the weight data that follows the flatbuffer unchanged. The
runtime reads the same values, so logits are bit-identical (tests/convert_test.py checks it).
"""

import flatbuffers

_ALIGN = 64  # where the weight data starts after the flatbuffer (the quantizer uses 16)


class _SharingBuilder(flatbuffers.Builder):
  """A flatbuffers Builder that writes an identical numpy vector or string only once.

  Reusing an offset is valid because the builder writes back to front: an earlier vector lies
  after every table written later, as a flatbuffer's unsigned offsets require."""

  def __init__(self, size: int):
    super().__init__(size)
    self._vectors, self._strings = {}, {}

  def CreateNumpyVector(self, x):  # pylint: disable=invalid-name
    key = (x.dtype.str, x.shape, x.tobytes())
    if key not in self._vectors:
      self._vectors[key] = super().CreateNumpyVector(x)
    return self._vectors[key]

  def CreateString(self, s, encoding="utf-8", errors="strict"):  # pylint: disable=invalid-name
    key = s.encode(encoding, errors) if isinstance(s, str) else bytes(s)
    if key not in self._strings:
      self._strings[key] = super().CreateString(key)
    return self._strings[key]


def pack(model, size_hint: int = 1 << 20) -> bytearray:
  """The flatbuffer of `model` (a schema ModelT), each distinct vector and string written once.
  `size_hint`: the bytes expected; a builder that starts that large does not grow by doubling
  (a 500 MB model held 1.5 GB at once while it grew)."""
  builder = _SharingBuilder(size_hint)
  builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
  return builder.Output()


def align(n: int) -> int:
  """`n` rounded up to where data stored after a flatbuffer may start."""
  return -(-n // _ALIGN) * _ALIGN


def share_vectors(raw: bytes | bytearray) -> bytearray:
  """The model in `raw` (.tflite bytes) with each distinct flatbuffer vector written once.

  Data stored after the flatbuffer (buffers, and large custom options, with an offset: how
  large models are written) is copied as it is, each piece at its old distance from the start
  of that region, which now begins 64-byte aligned. Raises ValueError if `raw` is not a whole
  .tflite (no TFL3 identifier, a flatbuffer that does not parse, data cut off)."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  if len(raw) < 8 or bytes(raw[4:8]) != b"TFL3":
    raise ValueError("not a .tflite flatbuffer (no TFL3 identifier)")
  try:
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(raw, 0))
    # (object, offset field, size field) of every piece of data stored after the flatbuffer
    outside = [(b, "offset", "size") for b in model.buffers or [] if b.offset > 1]
    outside += [(op, "largeCustomOptionsOffset", "largeCustomOptionsSize")
                for g in model.subgraphs or [] for op in g.operators or []
                if op.largeCustomOptionsOffset > 1]
  except Exception as e:  # a flatbuffer that does not parse fails anywhere inside the schema code
    raise ValueError(f"not a valid .tflite flatbuffer ({type(e).__name__}: {e})") from e
  if not model.subgraphs:
    raise ValueError("not a .tflite model: its flatbuffer has no subgraphs")
  if any(getattr(o, off) + getattr(o, size) > len(raw) for o, off, size in outside):
    raise ValueError(f"a truncated .tflite: its data runs past the end of its {len(raw)} bytes")
  if not outside:
    return pack(model)
  data_start = min(getattr(o, off) for o, off, _ in outside)
  size = len(pack(model))  # offsets are non-zero either way, so moving them keeps the size
  shift = align(size) - data_start
  for o, off, _ in outside:
    setattr(o, off, getattr(o, off) + shift)
  packed = pack(model)
  if len(packed) != size:
    raise AssertionError(f"re-packed flatbuffer changed size ({size} -> {len(packed)} bytes)")
  out = bytearray(data_start + shift + len(raw) - data_start)
  out[:size] = packed
  out[data_start + shift:] = memoryview(raw)[data_start:]
  return out
