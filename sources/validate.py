"""Checks a stranger's checkpoint file against its own size before any parser trusts it.

The `gguf` reader maps the file with numpy and believes every count and length it reads; a
safetensors header is JSON that names byte ranges. These checks walk the same structures with
explicit bounds, reading only the headers (never the tensor data), so a corrupt or hostile file
is refused with an error naming the problem before memory is allocated for anything it claims.
Memory used is bounded by the header bytes actually present in the file (and the caps below).
"""

import contextlib
import dataclasses
import json
import mmap
import os
import pathlib
import stat
import struct
from typing import BinaryIO, Iterator, NamedTuple

from litezoo.core.errors import ZooError


class FileCheckError(ZooError, ValueError):
  """A file that fails its checks; `detail` says why, the message starts with the path."""

  def __init__(self, path: os.PathLike, detail: str):
    super().__init__(f"{path}: {detail}")
    self.path, self.detail = path, detail


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


@contextlib.contextmanager
def open_regular(path: str | os.PathLike) -> Iterator[BinaryIO]:
  """`path` opened for reading, if it is a regular file. Raises FileCheckError naming why not: it
  cannot be opened (missing, a dangling symlink or a symlink loop, no permission), or it is a
  directory, a named pipe (whose open() would wait for a writer forever), a device (/dev/zero
  never ends) or a socket."""
  try:  # O_NONBLOCK: opening a FIFO returns at once instead of waiting; reads of files ignore it
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
  except OSError as e:
    raise FileCheckError(path, f"cannot be read ({e.strerror or e})") from e
  mode = os.fstat(fd).st_mode
  if not stat.S_ISREG(mode):  # before fdopen, which refuses a directory with its own traceback
    os.close(fd)
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    raise FileCheckError(path, f"is {kind}, not a regular file")
  with os.fdopen(fd, "rb") as f:
    yield f


# --- GGUF -----------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)  # those the `gguf` reader supports (v1 used 32-bit counts)
MAX_GGUF_TENSORS = 1 << 16  # real LLMs have a few thousand
MAX_GGUF_KEYS = 1 << 16  # real files have tens
MAX_GGUF_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 4
MAX_STRING = 1 << 30
# GGUF value types (gguf.GGUFValueType) -> size of a fixed-size value.
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4


class _Cursor:
  """Reads little-endian values from a mapped file, never past its end."""

  def __init__(self, data, path: pathlib.Path):
    self.data, self.path, self.pos = data, path, 0

  def fail(self, message: str) -> FileCheckError:
    return FileCheckError(self.path, message)

  def need(self, size: int, what: str) -> None:
    if size < 0 or self.pos + size > len(self.data):
      raise self.fail(f"{what} needs {size} bytes at offset {self.pos}, but the file has "
                      f"{len(self.data)} bytes (truncated or corrupt)")

  def unpack(self, fmt: str, what: str):
    size = struct.calcsize(fmt)
    self.need(size, what)
    value = struct.unpack_from(fmt, self.data, self.pos)
    self.pos += size
    return value[0] if len(value) == 1 else value

  def string(self, what: str, decode: bool = True) -> str | None:
    length = self.unpack("<Q", f"length of {what}")
    if length > min(MAX_STRING, len(self.data) - self.pos):
      raise self.fail(f"{what} claims {length} bytes at offset {self.pos}, but only "
                      f"{len(self.data) - self.pos} remain in the file")
    start, self.pos = self.pos, self.pos + length
    if not decode:
      return None
    try:
      return bytes(self.data[start:self.pos]).decode("utf-8")
    except UnicodeDecodeError as e:
      raise self.fail(f"{what} at offset {start} is not UTF-8 ({e.reason})") from e

  def skip_value(self, kind: int, what: str, depth: int = 0) -> None:
    if kind in _SIZES:
      self.need(_SIZES[kind], what)
      self.pos += _SIZES[kind]
    elif kind == _STRING:
      self.string(what, decode=False)
    elif kind == _ARRAY:
      if depth >= MAX_ARRAY_DEPTH:
        raise self.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
      item, count = self.unpack("<IQ", f"array header of {what}")
      if item in _SIZES:  # fixed-size items: one bounds check for all of them
        self.need(count * _SIZES[item], f"{count} items of {what}")
        self.pos += count * _SIZES[item]
        return
      if item not in (_STRING, _ARRAY):
        raise self.fail(f"{what}: unknown array item type {item}")
      if count > (len(self.data) - self.pos) // 8:  # each item has at least an 8-byte length
        raise self.fail(f"{what} claims {count} items, more than the "
                        f"{len(self.data) - self.pos} remaining bytes can hold")
      if item == _STRING:  # vocabularies: 10^5 strings, so the loop is kept tight
        data, pos, end = self.data, self.pos, len(self.data)
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
          if pos + 8 > end:
            pos = end + 1
            break
          pos += 8 + unpack(data, pos)[0]
        if pos > end:
          raise self.fail(f"the {count} strings of {what} run past the end of the file")
        self.pos = pos
        return
      for _ in range(count):
        self.skip_value(item, what, depth + 1)
    else:
      raise self.fail(f"{what}: unknown value type {kind}")


class GGUFHeader(NamedTuple):
  """What check_gguf reads on its way through a GGUF file's header."""
  architecture: str | None  # general.architecture, None if the file has none
  tensors: int  # entries in the tensor table (0 in a vocabulary-only file)


def check_gguf(path: str | os.PathLike) -> GGUFHeader:
  """Refuses a GGUF file whose header, metadata or tensor table does not fit the file; returns
  its architecture and tensor count, read on the way: the gguf package's reader takes 10-25 s
  over a large vocabulary before anything can be asked of it. Raises FileCheckError."""
  import gguf  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  with open_regular(path) as f:
    size = os.fstat(f.fileno()).st_size
    if size < 24:
      raise FileCheckError(path, f"{size} bytes is too short for a GGUF header (24 bytes)")
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
      return _check_gguf(_Cursor(data, path), gguf)


def _check_gguf(c: _Cursor, gguf) -> GGUFHeader:
  magic = bytes(c.data[:4])
  if magic != GGUF_MAGIC:
    raise c.fail(f"not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
  c.pos = 4
  version, tensors, keys = c.unpack("<IQQ", "header")
  if version not in GGUF_VERSIONS:
    hint = " (a big-endian file?)" if version & 0xFFFF == 0 else ""
    raise c.fail(f"GGUF version {version}{hint} is not supported; supported: "
                 f"{', '.join(map(str, GGUF_VERSIONS))}")
  if tensors > MAX_GGUF_TENSORS or tensors * 24 > len(c.data):  # a tensor entry is >= 24 bytes
    raise c.fail(f"header claims {tensors} tensors, more than the file can hold")
  if keys > MAX_GGUF_KEYS or keys * 13 > len(c.data):  # a key/value is >= 13 bytes
    raise c.fail(f"header claims {keys} metadata keys, more than the file can hold")
  alignment = gguf.GGUF_DEFAULT_ALIGNMENT
  architecture = None
  seen_keys = set()
  for index in range(keys):
    key = c.string(f"metadata key #{index}")
    if key in seen_keys:
      raise c.fail(f"metadata key {key!r} appears twice")
    seen_keys.add(key)
    kind = c.unpack("<I", f"type of {key!r}")
    if key == "general.alignment":
      if kind != _UINT32:
        raise c.fail(f"general.alignment has value type {kind}, expected uint32 ({_UINT32})")
      alignment = c.unpack("<I", "general.alignment")
      if alignment == 0 or alignment & (alignment - 1):
        raise c.fail(f"general.alignment {alignment} is not a power of two")
    elif key == "general.architecture" and kind == _STRING:
      architecture = c.string("general.architecture")
    else:
      c.skip_value(kind, f"metadata {key!r}")
  infos, names = [], set()
  for index in range(tensors):
    name = c.string(f"name of tensor #{index}")
    if name in names:
      raise c.fail(f"tensor {name!r} appears twice")
    names.add(name)
    n_dims = c.unpack("<I", f"dimension count of {name!r}")
    if not 1 <= n_dims <= MAX_GGUF_DIMS:
      raise c.fail(f"tensor {name!r} has {n_dims} dimensions; 1 to {MAX_GGUF_DIMS} are valid")
    dims = c.unpack(f"<{n_dims}Q", f"shape of {name!r}")
    dims = (dims,) if n_dims == 1 else dims
    raw_type, offset = c.unpack("<IQ", f"type and offset of {name!r}")
    infos.append((name, dims, raw_type, offset))
  data_start = -(-c.pos // alignment) * alignment
  ranges = []
  for name, dims, raw_type, offset in infos:
    try:
      block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(raw_type)]
    except (ValueError, KeyError):
      raise c.fail(f"tensor {name!r} has unknown GGML type {raw_type}") from None
    if any(d <= 0 or d >= 1 << 62 for d in dims):
      raise c.fail(f"tensor {name!r} has shape {list(dims)}: every dimension must be positive")
    if dims[0] % block:
      raise c.fail(f"tensor {name!r}: inner dimension {dims[0]} is not a multiple of the "
                   f"{block}-element blocks of its type")
    count = 1
    for d in dims:
      count *= d  # Python ints: no overflow; the size check below bounds it
    nbytes = count // block * type_size
    start = data_start + offset
    if offset % alignment:
      raise c.fail(f"tensor {name!r}: data offset {offset} is not aligned to {alignment}")
    if start + nbytes > len(c.data):
      raise c.fail(f"tensor {name!r}: its {nbytes} bytes at offset {start} run past the end "
                   f"of the {len(c.data)}-byte file (truncated or corrupt)")
    ranges.append((start, start + nbytes, name))
  _check_no_overlap(ranges, c.fail)
  return GGUFHeader(architecture, tensors)


def _check_no_overlap(ranges, fail) -> None:
  ranges.sort()
  for (_, end, first), (start, _, second) in zip(ranges, ranges[1:]):
    if start < end:
      raise fail(f"tensors {first!r} and {second!r} overlap in the file")


# --- safetensors ----------------------------------------------------------------------------------

MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
# Byte-sized dtypes the library and torch both handle.
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                      "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8,
                      "F64": 8}


@dataclasses.dataclass(frozen=True)
class SafetensorsEntry:
  dtype: str
  shape: tuple[int, ...]
  begin: int  # byte offsets in the file
  end: int


def check_safetensors(path: str | os.PathLike) -> dict[str, SafetensorsEntry]:
  """Refuses a .safetensors file whose header does not describe exactly the bytes that follow.

  Returns the header's tensors, in file order."""
  path = pathlib.Path(path)

  def fail(message: str) -> FileCheckError:
    return FileCheckError(path, message)

  with open_regular(path) as f:
    size = os.fstat(f.fileno()).st_size
    if size < 8:
      raise fail(f"{size} bytes is too short for a safetensors header (8-byte length first)")
    (length,) = struct.unpack("<Q", f.read(8))
    if length > MAX_SAFETENSORS_HEADER:
      raise fail(f"header length {length} exceeds the {MAX_SAFETENSORS_HEADER}-byte limit")
    if length > size - 8:
      raise fail(f"header length {length} is more than the {size - 8} bytes after it")
    raw = f.read(length)
  try:
    header = json.loads(raw)
  except (UnicodeDecodeError, ValueError) as e:
    raise fail(f"header is not valid JSON ({e})") from e
  if not isinstance(header, dict):
    raise fail(f"header is a JSON {type(header).__name__}, expected an object")
  metadata = header.pop("__metadata__", {})
  if not isinstance(metadata, dict) or not all(
      isinstance(v, str) for v in metadata.values()):
    raise fail("__metadata__ must map strings to strings")
  data_size = size - 8 - length
  ranges = []
  for name, entry in header.items():
    what = f"tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
      raise fail(f"{what}: expected an object with dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
      raise fail(f"{what}: unknown dtype {dtype!r}; known: {', '.join(SAFETENSORS_DTYPES)}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
      raise fail(f"{what}: shape {shape!r} must be a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_int, offsets))
        or not 0 <= offsets[0] <= offsets[1]):
      raise fail(f"{what}: data_offsets {offsets!r} must be [begin, end] with "
                 "0 <= begin <= end")
    if offsets[1] > data_size:
      raise fail(f"{what}: data_offsets {offsets} run past the {data_size} data bytes in the "
                 "file (truncated or corrupt)")
    count = 1
    for d in shape:
      count *= d
    expected = count * SAFETENSORS_DTYPES[dtype]
    if offsets[1] - offsets[0] != expected:
      raise fail(f"{what}: {dtype} {shape} needs {expected} bytes, but data_offsets "
                 f"{offsets} span {offsets[1] - offsets[0]}")
    ranges.append((offsets[0], offsets[1], name))
  _check_no_overlap([r for r in ranges if r[0] < r[1]], fail)
  end = max((r[1] for r in ranges), default=0)
  if end != data_size:  # the library refuses trailing bytes too: say so in our words
    raise fail(f"the tensors end at data byte {end}, but the file has {data_size} data bytes")
  start = 8 + length
  return {name: SafetensorsEntry(e["dtype"], tuple(e["shape"]), start + e["data_offsets"][0],
                                 start + e["data_offsets"][1]) for name, e in header.items()}


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_safetensors_index(index: str | os.PathLike) -> dict[str, str]:
  """The weight_map of a sharded checkpoint's index, each shard a plain file name in the index's
  own directory (no paths: `../x` or `/etc/x` would read outside the checkpoint)."""
  index = pathlib.Path(index)

  def fail(message: str) -> FileCheckError:
    return FileCheckError(index, message)

  with open_regular(index) as f:
    if os.fstat(f.fileno()).st_size > MAX_SAFETENSORS_HEADER:
      raise fail(f"an index larger than {MAX_SAFETENSORS_HEADER} bytes is not plausible")
    data = f.read()
  try:
    index_json = json.loads(data)
  except (UnicodeDecodeError, ValueError) as e:
    raise fail(f"not a valid safetensors index: not JSON ({e})") from e
  if not isinstance(index_json, dict) or "weight_map" not in index_json:
    raise fail("not a valid safetensors index: it has no \"weight_map\" of tensor name -> shard "
               "file")
  weight_map = index_json["weight_map"]
  if not isinstance(weight_map, dict) or not weight_map:
    raise fail("weight_map must be a non-empty object of tensor name -> shard file")
  for name, shard in weight_map.items():
    if (not isinstance(shard, str) or shard in ("", ".", "..") or "/" in shard or "\\" in shard
        or "\0" in shard or not shard.endswith(".safetensors")):
      raise fail(f"tensor {name!r} points to {shard!r}; a shard must be a .safetensors file name "
                 "in the index's directory")
  return weight_map
