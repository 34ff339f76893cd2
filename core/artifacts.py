"""Artifacts on disk: written atomically (temp file, fsync, rename), described by a manifest."""

import contextlib
import json
import os
import pathlib
import tempfile
from typing import Any, Iterator

from litezoo.core.checkpoint import sha256_file
from litezoo.core.errors import ZooError

MANIFEST_SUFFIX = ".manifest.json"


class OutputError(ZooError, OSError):
  pass


def artifact_name(model: str, variant: str, recipe: str, kv_cache_max_len: int) -> str:
  return f"{model}-{variant}_{recipe}_ekv{kv_cache_max_len}.tflite"


def manifest_path(artifact: str | os.PathLike) -> pathlib.Path:
  artifact = pathlib.Path(artifact)
  return artifact.with_name(artifact.stem + MANIFEST_SUFFIX)


def ensure_writable_dir(path: str | os.PathLike) -> pathlib.Path:
  """Creates `path` if needed and proves it writable, before any expensive work starts."""
  path = pathlib.Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".litezoo-probe-"):
      pass
  except OSError as e:
    raise OutputError(f"output directory {path} is not writable ({e.strerror or e}); "
                      "choose another with --output_dir") from e
  return path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temp path beside `final`; renames it onto `final` only if the block succeeds.

  On any exception, Ctrl-C included, the temp file is removed and `final` is untouched.
  """
  final = pathlib.Path(final)
  fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
  os.close(fd)
  tmp = pathlib.Path(tmp)
  umask = os.umask(0)
  os.umask(umask)
  try:
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the artifact gets normal permissions
    yield tmp
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, final)
  finally:
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def scratch_path(directory: str | os.PathLike, name: str) -> Iterator[pathlib.Path]:
  """A temp path in `directory` that is removed when the block ends, however it ends."""
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=name + ".", suffix=".partial")
  os.close(fd)
  tmp = pathlib.Path(tmp)
  try:
    yield tmp
  finally:
    tmp.unlink(missing_ok=True)


def write_bytes(final: str | os.PathLike, data: bytes) -> None:
  with atomic_path(final) as tmp:
    tmp.write_bytes(data)


def write_json(final: str | os.PathLike, obj: Any) -> None:
  with atomic_path(final) as tmp:
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_manifest(artifact: str | os.PathLike) -> dict:
  return json.loads(manifest_path(artifact).read_text())


def verify(artifact: str | os.PathLike) -> bool:
  """True if the artifact exists and its bytes match its manifest's sha256."""
  artifact = pathlib.Path(artifact)
  try:
    return sha256_file(artifact) == read_manifest(artifact)["sha256"]
  except (OSError, ValueError, KeyError):
    return False
