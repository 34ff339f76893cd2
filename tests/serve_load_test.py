"""The server under load (tier `integration`, a few minutes): 8 concurrent clients send 200
requests mixing streaming, non-streaming, cancelled and killed streams, slow readers, malformed
JSON and oversized bodies to a tiny chat model on loopback. Every answer must equal its prompt's
greedy reference (nothing lost or mixed up), no server error, the queue within its bound; p50/p95
latency and tokens/s are printed and written to the test's outputs. The server then still serves,
and drains on SIGTERM. serve_test has the short version."""

import json
import os
import pathlib

import pytest

from litezoo.tests import serving
from litezoo.tools.server import load

MAX_QUEUE = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  checkpoint = serving.write_chat_checkpoint(tmp_path_factory.mktemp("chat"))
  s = serving.Server(*serving.chat_args(checkpoint, (
      "--prefill_seq_lens=8,32", "--kv_cache_max_len=256", "--quantize=none")),
      f"--max_queue={MAX_QUEUE}", "--slots=4", "--max_body_bytes=100000")
  yield s
  assert s.stop() == 0, s.log()[-3000:]
  assert "Traceback" not in s.log(), s.log()[-3000:]


def test_200_requests_from_8_clients(server):
  prompts = [f"Tell me about topic {i}, please." for i in range(12)]
  report = load.run(server.v1, "smollm2-tiny", prompts, requests=200, concurrency=8,
                    max_tokens=48, max_body_bytes=100000, timeout=120)
  print(report.line())
  outputs = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
  if outputs:
    pathlib.Path(outputs, "serve_load.json").write_text(json.dumps(load.summary(report),
                                                                   indent=2))
  assert report.ok(), report
  assert report.server_errors == 0 and report.mismatches == 0
  assert report.max_queued_seen <= MAX_QUEUE
  assert sum(report.by_kind.values()) == 200 and report.completion_tokens > 0
  health = server.health()
  assert health["errors"] == 0 and health["queued"] == 0
