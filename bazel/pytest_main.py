"""Runs pytest on the test files a zoo_py_test names, so `bazel test` reports pytest's results."""

import os
import sys

import pytest

NO_TESTS_COLLECTED = 5

if __name__ == "__main__":
  code = pytest.main(["-p", "no:cacheprovider", "-q", *sys.argv[1:]])
  # A shard of a sharded suite may hold no case (fewer models than shards): not a failure.
  if code == NO_TESTS_COLLECTED and os.environ.get("TEST_TOTAL_SHARDS"):
    code = 0
  sys.exit(code)
