"""Pinned sources: a Hugging Face Hub snapshot (commit + every file's sha256) or a file shipped
in pip packages (parts + sha256). Fetched or found, checked against the pin once, then reused.
"""

from __future__ import annotations

import os
import pathlib

from litezoo.artifacts import files
from litezoo.core.spec import HubPin, PackagedFile
from litezoo.sources import CheckpointError


class PinError(CheckpointError):
  pass


def fetch_pinned(pin: HubPin, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The snapshot directory of `pin` in the Hugging Face cache, every file checked by sha256.

  Files already in the cache are used without touching the network (a commit-sha revision never
  needs resolving), and with HF_HUB_OFFLINE=1 nothing ever does; missing files are downloaded.
  """
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  from huggingface_hub import errors as hub_errors  # pylint: disable=g-import-not-at-top
  found, missing, reason = {}, [], ""
  cache_only = False
  for name in sorted(pin.sha256):
    try:
      found[name] = pathlib.Path(huggingface_hub.hf_hub_download(
          pin.repo_id, name, revision=pin.revision, cache_dir=cache_dir,
          local_files_only=cache_only))
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled,
            hub_errors.GatedRepoError, OSError) as e:
      missing.append(name)
      reason = reason or type(e).__name__
      # The rest only from the cache: each try at an unreachable hub waits for its timeouts
      # (Gemma's nine files took 3.5 minutes to be refused offline).
      cache_only = True
  if missing:
    where = pathlib.Path(cache_dir or huggingface_hub.constants.HF_HUB_CACHE)
    snapshot = where / f"models--{pin.repo_id.replace('/', '--')}" / "snapshots" / pin.revision
    licence = (" (a gated model: accept its licence on the hub and log in with `hf auth login` "
               "first)" if pin.gated else "")
    raise PinError(
        f"{pin.repo_id}@{pin.revision[:12]}: {len(missing)} of {len(pin.sha256)} pinned files are "
        f"not in the Hugging Face cache at {snapshot} and the hub cannot be reached ({reason}): "
        f"{', '.join(missing)}. On a connected machine{licence}: `hf download {pin.repo_id} "
        f"--revision {pin.revision}` and copy the cache here, or pass --checkpoint=DIR")
  for name, path in found.items():
    actual = files.sha256_stamped(path)
    if actual != pin.sha256[name]:
      raise PinError(f"{pin.repo_id}@{pin.revision[:12]} file {name}: sha256 {actual} does not "
                     f"match the pinned {pin.sha256[name]}; the cached file is corrupt or was "
                     f"swapped, delete {path} and fetch it again")
  return next(iter(found.values())).parent


def _site_path(relative: str) -> pathlib.Path:
  """A file inside an installed package, found without importing the package."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  package, _, rest = relative.partition("/")
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise CheckpointError(f"package {package!r} is not installed; run ./setup.sh, which installs "
                          "the model packages from requirements.lock")
  return pathlib.Path(list(spec.submodule_search_locations)[0], rest)


def _declared_part(part: str, inputs: list[pathlib.Path]) -> pathlib.Path:
  found = [f for f in inputs if str(f).endswith(part)]
  if len(found) != 1:
    raise CheckpointError(f"expected one file ending in {part} among the declared inputs, found "
                          f"{len(found)}: {', '.join(str(f) for f in found) or 'none'}")
  return found[0]


def fetch_packaged(source: PackagedFile, inputs: list[pathlib.Path] | None = None,
                   join_dir: pathlib.Path | None = None) -> pathlib.Path:
  """The checkpoint file, checked against its sha256; split files are joined once and cached.

  `inputs` gives the parts' paths instead of finding them in site-packages (a Bazel action sees only
  its declared inputs), and `join_dir` where to join them instead of the cache.
  """
  parts = [_site_path(p) for p in source.parts] if inputs is None else [
      _declared_part(part, inputs) for part in source.parts]
  missing = [str(p) for p in parts if not p.exists()]
  if missing:
    raise CheckpointError(f"{source.name}: missing {', '.join(missing)}; run ./setup.sh")
  if len(parts) == 1:
    path = parts[0]
  else:
    path = (join_dir or files.cache_root() / "files" / source.sha256[:16]) / source.name
    if not path.exists():
      path.parent.mkdir(parents=True, exist_ok=True)
      with files.atomic_path(path) as tmp, open(tmp, "wb") as out:
        for part in parts:
          with open(part, "rb") as f:
            while block := f.read(1 << 24):
              out.write(block)
  actual = files.sha256_stamped(path)
  if actual != source.sha256:
    raise PinError(f"{source.name} ({path}): sha256 {actual} does not match the pinned "
                   f"{source.sha256}; reinstall its packages with ./setup.sh"
                   + (f" and delete {path}" if len(parts) > 1 else ""))
  return path
