"""A short fixed-seed slice of every fuzz target (fuzz/targets.py): a fixed number of inputs
each, zero crashes and zero hangs. Longer runs: `bazel run //fuzz:fuzz -- --seconds=600`."""

import pytest

from litezoo.fuzz import fuzz

RUNS = {"gguf": 3000, "safetensors": 3000, "recipe": 5000}  # a few seconds each


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_fuzz_slice_finds_no_crash_or_hang(target, tmp_path, capsys):
  result = fuzz.run_target(target, runs=RUNS[target], seed=20261127,
                           artifacts_dir=tmp_path, log=lambda _: None)
  with capsys.disabled():
    print(f"\nfuzz slice {result.line()}")
  assert (result.crashes, result.hangs) == (0, 0), result.finding
  assert result.executions == RUNS[target]  # the budget really ran
