"""Releases built by Bazel itself, from clean output roots: byte-for-byte reproducible, and served
by a real shared cache (nginx with WebDAV on loopback, Bazel's HTTP remote-cache protocol).

Runs nested Bazel servers on this checkout, each with its own output root under the test's tmp dir.
LITEZOO_RELEASE_TARGET picks the release (default: the test-sized //tests:tiny_release); the
opt-in //tests:release_reproducible_smollm2_test runs the reproducibility check on SmolLM2's real one.
"""

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import time

import pytest

from litezoo.tests import nested_bazel

TARGET = os.environ.get("LITEZOO_RELEASE_TARGET", "//tests:tiny_release")
NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {root}/access.log;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root}/cache;
    client_max_body_size 0;
    dav_methods PUT;
    create_full_put_path on;
    dav_access user:rw;
  }}
}}
"""


@contextlib.contextmanager
def nginx_cache(root: pathlib.Path):
  """A WebDAV server on loopback: Bazel PUTs /ac/ and /cas/ entries and GETs them back."""
  (root / "cache").mkdir(parents=True)
  port = nested_bazel.free_port()
  conf = root / "nginx.conf"
  # Run as root, nginx would hand requests to `nobody`, who cannot write the test's directory.
  user = "user root;" if os.getuid() == 0 else ""
  conf.write_text(NGINX_CONF.format(root=root, port=port, user=user))
  server = subprocess.Popen(["/usr/sbin/nginx", "-p", str(root), "-c", str(conf)],
                            stderr=subprocess.PIPE)
  try:
    for _ in range(100):
      with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
        break
      assert server.poll() is None, server.stderr.read().decode()
      time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
  finally:
    server.terminate()
    server.wait(10)


def _build(bazel: nested_bazel.Bazel, *flags: str) -> dict[str, str]:
  """Builds the release; returns {file name: sha256} of its files."""
  bazel.build(*flags, TARGET)
  return bazel.hashes(bazel.bin() / TARGET.lstrip("/").replace(":", "/"))


def _by_mnemonic(spawns: list[dict]) -> dict[str, dict]:
  return {s["mnemonic"]: s for s in spawns if s["mnemonic"].startswith("Zoo")}


@pytest.fixture
def servers(tmp_path):
  started = []

  def start(name):
    started.append(nested_bazel.Bazel(tmp_path / name))
    return started[-1]

  yield start
  for bazel in started:
    bazel.expunge()


def test_release_is_reproducible_and_served_by_a_shared_cache(tmp_path, servers):
  with nginx_cache(tmp_path / "nginx") as cache:
    first = servers("first")
    files = _build(first, f"--remote_cache={cache}")
    assert set(files) >= {"manifest.json", "MODEL_CARD.md"}
    assert {"tinyllama.tflite", "tinyllama-int4.tflite"} <= set(files)  # int4: calibrated gptq
    assert {s["mnemonic"] for s in first.spawns} >= {"ZooConvert", "ZooQuantize", "ZooBundle",
                                                     "ZooDescribe"}
    assert not any(s["remoteCacheHit"] for s in _by_mnemonic(first.spawns).values())
    stored = [str(p) for p in (tmp_path / "nginx" / "cache").rglob("*") if p.is_file()]
    assert any("/ac/" in p for p in stored) and any("/cas/" in p for p in stored), stored

    # A second clean output root without the cache converts again: the same bytes.
    second = servers("second")
    assert _build(second) == files
    manifest = json.loads(_manifest(second))
    for name, entry in manifest["files"].items():
      assert files[name] == entry["sha256"], name

    # The first root wiped: every release action is now a hit in nginx's cache, same bytes.
    first("clean", "--expunge")
    assert _build(first, f"--remote_cache={cache}") == files
    hits = _by_mnemonic(first.spawns)
    assert hits["ZooConvert"]["remoteCacheHit"], hits["ZooConvert"]
    assert all(s["remoteCacheHit"] for s in hits.values())


def _manifest(bazel: nested_bazel.Bazel) -> str:
  return (bazel.bin() / TARGET.lstrip("/").replace(":", "/") / "manifest.json").read_text()
