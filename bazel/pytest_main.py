"""Runs pytest on the test files a zoo_py_test names, so `bazel test` reports pytest's results.

Every test target gets a home of its own: HOME, the zoo's cache root (LITEZOO_CACHE), the Hugging
Face cache and the temp dir all point under Bazel's per-test TEST_TMPDIR, and every tool a test
starts inherits them. So no test reads what an earlier run left in ~/.cache or /tmp, and none
writes outside its own directory (the sandbox mounts the real home read-only anyway).
"""

import os
import pathlib
import sys

import tempfile

import pytest

NO_TESTS_COLLECTED = 5


def own_home(root: pathlib.Path) -> dict[str, str]:
  """The environment that confines a test's state under `root` (created here)."""
  env = {"HOME": root / "home", "LITEZOO_CACHE": root / "litezoo-cache",
         "XDG_CACHE_HOME": root / "home" / ".cache", "HF_HOME": root / "hf-home",
         "TMPDIR": root / "tmp"}
  for path in env.values():
    path.mkdir(parents=True, exist_ok=True)
  # Nothing is fetched from a hub in a test: pinned sources must come from a local cache.
  return {**{k: str(v) for k, v in env.items()}, "HF_HUB_OFFLINE": "1"}


def prebuilt(test_artifacts: str) -> str:
  """$LITEZOO_PREBUILT for the zoo_artifacts a test names (`artifacts`, bazel/defs.bzl): their
  runfiles paths (space-separated, relative to the test's working directory) made absolute, so
  tools started in other directories find them; .tflite files only (manifests sit beside)."""
  return os.pathsep.join(os.path.abspath(p) for p in test_artifacts.split() if p.endswith(".tflite"))


if __name__ == "__main__":
  if "TEST_TMPDIR" in os.environ:  # under `bazel test`; a developer's plain pytest keeps their env
    os.environ.update(own_home(pathlib.Path(os.environ["TEST_TMPDIR"]) / "litezoo-test"))
    tempfile.tempdir = None  # re-read TMPDIR
  if os.environ.get("LITEZOO_TEST_ARTIFACTS"):
    os.environ["LITEZOO_PREBUILT"] = prebuilt(os.environ["LITEZOO_TEST_ARTIFACTS"])
  # The slowest cases go to the test log: where a target's time goes, for keeping the suite fast.
  code = pytest.main(["-p", "no:cacheprovider", "-q", "--durations=8", *sys.argv[1:]])
  # A shard of a sharded suite may hold no case (fewer models than shards): not a failure.
  if code == NO_TESTS_COLLECTED and os.environ.get("TEST_TOTAL_SHARDS"):
    code = 0
  sys.exit(code)
