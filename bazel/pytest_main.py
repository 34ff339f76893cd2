"""Runs pytest on the test files a zoo_py_test names, so `bazel test` reports pytest's results."""

import sys

import pytest

if __name__ == "__main__":
  sys.exit(pytest.main(["-p", "no:cacheprovider", "-q", *sys.argv[1:]]))
