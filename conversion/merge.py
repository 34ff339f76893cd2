"""Merges .tflite files that hold different signatures of one model into one file.

`export.export_float` converts the signatures in two groups, in two processes where the machine
has the cores and the memory (litert-torch's export is single-threaded Python: about 30 s per
signature for SmolLM2 135M, 14 signatures), then merges them here. Every signature reads the same
weights, so each weight is stored once: a buffer of the second file whose bytes equal one of the
first's is replaced by it, and only the rest (small constants such as a window's mask) is added.
Subgraphs, signature definitions and operator codes are appended with their indices remapped, and
the second file's tensor names that the first already has get a suffix (ai-edge-quantizer needs
names unique across the model).

Data stored after the flatbuffer (buffers with an offset: how files over 2 GB are written) is
copied from the files in pieces, never held in memory whole.
"""

import hashlib
import mmap
import os
import pathlib
import shutil

from litezoo.conversion import compact

# Ops that name a subgraph by index, other than a composite's decomposition (moved with it).
_SUBGRAPH_OPTIONS = ("CallOnceOptions", "IfOptions", "WhileOptions", "CallOptions")


class MergeError(ValueError):
  pass


def _parse(f):
  """The ModelT of the .tflite open as `f`, read from the bytes before its first data stored
  after the flatbuffer (the lazy reader maps the file only to find where that starts)."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as raw:
    if len(raw) < 8 or raw[4:8] != b"TFL3":
      raise MergeError(f"{f.name} is not a .tflite flatbuffer (no TFL3 identifier)")
    lazy = schema.Model.GetRootAs(raw, 0)
    offsets = [lazy.Buffers(i).Offset() for i in range(lazy.BuffersLength())]
    del lazy
    end = min((o for o in offsets if o > 1), default=len(raw))
  f.seek(0)
  return schema.ModelT.InitFromObj(schema.Model.GetRootAs(f.read(end), 0))


def _key(buffer, f) -> tuple[int, bytes] | None:
  """A buffer's data as (size, digest), inline or stored after the flatbuffer in the file `f`
  (read in pieces: a mapped file's pages would count in this process's memory); None if
  empty."""
  digest = hashlib.blake2b(digest_size=20)
  if buffer.offset > 1:
    f.seek(buffer.offset)
    left = buffer.size
    while left:
      piece = f.read(min(left, 1 << 24))
      if not piece:
        raise MergeError(f"{f.name} is truncated: a buffer runs past its end")
      digest.update(piece)
      left -= len(piece)
    return buffer.size, digest.digest()
  if buffer.data is not None and len(buffer.data):
    digest.update(buffer.data.tobytes())
    return len(buffer.data) * buffer.data.itemsize, digest.digest()
  return None


def _check_no_subgraph_calls(model, path: pathlib.Path) -> None:
  """An op that calls a subgraph by index (a call, a branch, a loop) would need its index moved
  too; the zoo's graphs have none, so a file that has one is refused, not broken."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  kinds = {getattr(schema.BuiltinOptions, n) for n in _SUBGRAPH_OPTIONS
           if hasattr(schema.BuiltinOptions, n)}
  for graph in model.subgraphs or []:
    for op in graph.operators or []:
      if op.builtinOptionsType in kinds:
        raise MergeError(f"{path} has an op that calls a subgraph by index: not merged")


def merge(first: pathlib.Path, second: pathlib.Path, out: pathlib.Path) -> None:
  """Writes to `out` the model of `first` with the signatures of `second` appended.

  Both must be conversions of the same weights (the same converter, the same model): a buffer
  of `second` with the bytes of one of `first` becomes that buffer. Signature names must not
  repeat. Raises MergeError naming what cannot be merged.
  """
  with open(first, "rb") as fa, open(second, "rb") as fb:
    a, b = _parse(fa), _parse(fb)
    for model, path in ((a, first), (b, second)):
      _check_no_subgraph_calls(model, path)
    names = {s.signatureKey for s in a.signatureDefs or []}
    twice = names & {s.signatureKey for s in b.signatureDefs or []}
    if twice:
      raise MergeError(f"both files have the signature {sorted(twice)[0].decode()}")

    by_digest = {}  # the first file's stored data, by content
    for index, buffer in enumerate(a.buffers):
      key = _key(buffer, fa)
      if key is not None:
        by_digest.setdefault(key, index)

    appended = []  # (buffer, its bytes) of the second file, stored after the first's data
    remap = {}
    for index, buffer in enumerate(b.buffers):
      key = _key(buffer, fb)
      if key is not None and key in by_digest:
        remap[index] = by_digest[key]
        buffer.data = None  # a view of the second file's bytes: let them go before packing
        continue
      if buffer.offset > 1:  # small (a constant no signature of the first file has): a copy
        fb.seek(buffer.offset)
        appended.append((buffer, fb.read(buffer.size)))
      elif buffer.data is not None:
        buffer.data = buffer.data.copy()  # its own: the second file's bytes can then go
      remap[index] = len(a.buffers)
      a.buffers.append(buffer)
    first_size = os.fstat(fa.fileno()).st_size

    codes = {}
    for index, code in enumerate(a.operatorCodes):
      codes.setdefault((code.builtinCode, code.deprecatedBuiltinCode, code.customCode,
                        code.version), index)
    code_remap = {}
    for index, code in enumerate(b.operatorCodes):
      key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
      if key not in codes:
        codes[key] = len(a.operatorCodes)
        a.operatorCodes.append(code)
      code_remap[index] = codes[key]

    # ai-edge-quantizer keys its work by tensor name across every subgraph, and each conversion
    # names its own tensors from the same counters: the second file's names that the first has
    # get a suffix (the recipes' regexes match names from the start, so they still match).
    taken = {t.name for g in (*a.subgraphs, *b.subgraphs) for t in g.tensors or []}
    first_names = {t.name for g in a.subgraphs for t in g.tensors or []}
    for graph in b.subgraphs:
      for tensor in graph.tensors or []:
        if tensor.name is not None and tensor.name in first_names:
          k = 2
          while tensor.name + b"_%d" % k in taken:
            k += 1
          tensor.name += b"_%d" % k
          taken.add(tensor.name)

    shift = len(a.subgraphs)
    from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
    composite = schema.BuiltinOptions2.StableHLOCompositeOptions
    for graph in b.subgraphs:
      for tensor in graph.tensors or []:
        tensor.buffer = remap[tensor.buffer]
      for op in graph.operators or []:
        op.opcodeIndex = code_remap[op.opcodeIndex]
        if op.builtinOptions2Type == composite:  # its decomposition subgraph moves too
          op.builtinOptions2.decompositionSubgraphIndex += shift
      a.subgraphs.append(graph)
    for sig in b.signatureDefs:
      sig.subgraphIndex += shift
      a.signatureDefs.append(sig)
  _write(a, first, first_size, appended, out)


def _write(model, first: pathlib.Path, first_size: int, appended, out: pathlib.Path) -> None:
  """Packs `model`; data stored after the flatbuffer comes from `first` (its whole data region,
  at the same distances from its start), then from `appended`, 64-byte aligned."""
  mine = {id(b) for b, _ in appended}
  outside = [b for b in model.buffers if b.offset > 1 and id(b) not in mine]
  if not outside and not appended:
    out.write_bytes(compact.pack(model, size_hint=first_size + (1 << 24)))
    return
  start = min((b.offset for b in outside), default=first_size)
  size = len(compact.pack(model))  # offsets are non-zero either way: moving them keeps the size
  base = compact.align(size)
  for b in outside:
    b.offset += base - start
  cursor = compact.align(base + first_size - start)
  for buffer, data in appended:
    buffer.offset = cursor
    cursor = compact.align(cursor + len(data))
  packed = compact.pack(model)
  if len(packed) != size:
    raise AssertionError(f"re-packed flatbuffer changed size ({size} -> {len(packed)} bytes)")
  with open(out, "wb") as f, open(first, "rb") as source:
    f.write(packed)
    f.write(b"\0" * (base - size))
    source.seek(start)
    shutil.copyfileobj(source, f, 1 << 24)
    for buffer, data in appended:
      f.write(b"\0" * (buffer.offset - f.tell()))
      f.write(data)
