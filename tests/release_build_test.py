"""Releases built by Bazel itself, from clean output roots: byte-for-byte reproducible, and served
by a real shared cache (nginx with WebDAV on loopback, Bazel's HTTP remote-cache protocol).

Runs nested Bazel servers on this checkout, each with its own output root under the test's tmp dir.
LITEZOO_RELEASE_TARGET picks the release (default: the test-sized //tests:tiny_release); the
opt-in //tests:release_reproducible_smollm2_test runs the reproducibility check on SmolLM2's real one.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest

from litezoo.tests import testing

TARGET = os.environ.get("LITEZOO_RELEASE_TARGET", "//tests:tiny_release")
# The checkout: runfiles are symlinks into it.
WORKSPACE = (testing.RUNFILES_ROOT / "litezoo" / "requirements.lock").resolve().parent
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


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def nginx_cache(root: pathlib.Path):
  """A WebDAV server on loopback: Bazel PUTs /ac/ and /cas/ entries and GETs them back."""
  (root / "cache").mkdir(parents=True)
  port = _free_port()
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


class Bazel:
  """A Bazel server of its own on this checkout, with an output root nobody else uses."""

  def __init__(self, root: pathlib.Path):
    self.root = root

  def __call__(self, *args: str) -> subprocess.CompletedProcess:
    command = ["bazel", f"--output_user_root={self.root}", f"--output_base={self.root}/base",
               *args]
    result = subprocess.run(command, cwd=WORKSPACE, capture_output=True, text=True,
                            env={**os.environ, "HOME": str(self.root)})
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-4000:]}"
    return result

  def build(self, *flags: str) -> dict[str, str]:
    """Builds the release; returns {file name: sha256} of its files."""
    log = self.root / "exec.json"
    # No convenience symlinks: they would repoint the checkout's bazel-* links at this server.
    self("build", "--symlink_prefix=/", f"--execution_log_json_file={log}", *flags, TARGET)
    self.spawns = _spawns(log)
    out = pathlib.Path(self("info", "bazel-bin").stdout.strip())
    directory = out / TARGET.lstrip("/").replace(":", "/")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}

  def expunge(self):
    """Deletes this server's output root (GBs of converted files) and stops the server."""
    subprocess.run(["bazel", f"--output_user_root={self.root}", f"--output_base={self.root}/base",
                    "clean", "--expunge"], cwd=WORKSPACE, capture_output=True)


def _spawns(log: pathlib.Path) -> list[dict]:
  """The execution log: JSON objects one after another (Bazel 4 writes no list)."""
  text, decoder, spawns, index = log.read_text(), json.JSONDecoder(), [], 0
  while index < len(text):
    while index < len(text) and text[index].isspace():
      index += 1
    if index < len(text):
      spawn, index = decoder.raw_decode(text, index)
      spawns.append(spawn)
  return spawns


def _by_mnemonic(spawns: list[dict]) -> dict[str, dict]:
  return {s["mnemonic"]: s for s in spawns if s["mnemonic"].startswith("Zoo")}


@pytest.fixture
def servers(tmp_path):
  started = []

  def start(name):
    started.append(Bazel(tmp_path / name))
    return started[-1]

  yield start
  for bazel in started:
    bazel.expunge()


def test_release_is_reproducible_and_served_by_a_shared_cache(tmp_path, servers):
  with nginx_cache(tmp_path / "nginx") as cache:
    first = servers("first")
    files = first.build(f"--remote_cache={cache}")
    assert set(files) >= {"manifest.json", "MODEL_CARD.md"}
    assert any(name.endswith(".tflite") for name in files)
    assert {s["mnemonic"] for s in first.spawns} >= {"ZooConvert", "ZooBundle", "ZooDescribe"}
    assert not any(s["remoteCacheHit"] for s in _by_mnemonic(first.spawns).values())
    stored = [str(p) for p in (tmp_path / "nginx" / "cache").rglob("*") if p.is_file()]
    assert any("/ac/" in p for p in stored) and any("/cas/" in p for p in stored), stored

    # A second clean output root without the cache converts again: the same bytes.
    second = servers("second")
    assert second.build() == files
    manifest = json.loads(_manifest(second))
    for name, entry in manifest["files"].items():
      assert files[name] == entry["sha256"], name

    # The first root wiped: every release action is now a hit in nginx's cache, same bytes.
    first("clean", "--expunge")
    assert first.build(f"--remote_cache={cache}") == files
    hits = _by_mnemonic(first.spawns)
    assert hits["ZooConvert"]["remoteCacheHit"], hits["ZooConvert"]
    assert all(s["remoteCacheHit"] for s in hits.values())


def _manifest(bazel: Bazel) -> str:
  out = pathlib.Path(bazel("info", "bazel-bin").stdout.strip())
  return (out / TARGET.lstrip("/").replace(":", "/") / "manifest.json").read_text()
