"""The real SmolLM2 135M bundle (default recipe) in Google's LiteRT-LM engine answers like the zoo.

Opt-in (minutes, real weights): bazel test //tests:bundle_real_test --test_output=streamed

The engine renders the chat template carried in the bundle itself (Conversation API); the zoo
side is `tools/generate`, greedy on both sides. Prints load time and speeds of both.
"""

import time


from litezoo import pipeline
from litezoo.artifacts import bundle
from litezoo.core import registry
from litezoo.tests import testing

QUESTION = "What is the capital of France?"


def test_smollm2_bundle_answers_like_tools_generate(tmp_path):
  import litert_lm  # pylint: disable=g-import-not-at-top
  spec = registry.Registry().get("smollm2")
  weights = pipeline.weights(spec, "135m")
  artifact = pipeline.artifact(spec, "135m", weights)
  tok = pipeline.tokenizer(weights)
  start = time.monotonic()
  bundles = bundle.write_bundles(artifact, tok, weights.path, tmp_path, formats=("litertlm",),
                                 litertlm_type=spec.family.litertlm_type)
  print(f"bundled in {time.monotonic() - start:.1f} s: " +
        ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in bundles.values()))

  zoo = testing.run_tool("generate", "--model=smollm2", f"--prompt={QUESTION}")
  assert zoo.returncode == 0, zoo.stderr
  print(f"tools/generate: {zoo.stdout.strip()!r} {zoo.stderr.strip().splitlines()[-1]}")

  for run in ("first (packs weights)", "second (cached)"):
    start = time.monotonic()
    engine = litert_lm.Engine(str(bundles["litertlm"]),
                              backend=litert_lm.interfaces.CPU(thread_count=2),
                              cache_dir=str(tmp_path), enable_benchmark=True)
    load = time.monotonic() - start
    conversation = engine.create_conversation(sampler_config=litert_lm.SamplerConfig(top_k=1),
                                              max_output_tokens=256)
    message = {"role": "user", "content": QUESTION}
    rendered = conversation.render_message_to_string(message)
    assert rendered == tok.chat_text([message])
    start = time.monotonic()
    answer = conversation.send_message(message)["content"][0]["text"]
    seconds = time.monotonic() - start
    info = conversation.get_benchmark_info()
    print(f"engine {run}: load {load:.2f} s, answer {answer!r} in {seconds:.2f} s; {info}")
    conversation.close()
    engine.close()
    assert answer.strip() == zoo.stdout.strip()
