"""zoo_artifact conversions run by a real remote-execution service: BuildGrid 0.9.1 on loopback
(its server with PostgreSQL, the scheduler it requires), a host-tools worker taking the actions
through BuildGrid's Bots API (tests/reapi_worker.py), and a nested Bazel with
`--remote_executor`, whose execution log must show the conversions executed remotely, neither
run locally nor served from a cache.

BuildGrid needs Python 3.13 (the project's venv is 3.11): the test makes a venv of its own under
its temp dir from tests/buildgrid.lock, with a python3.13 from PATH, pyenv, or
LITEZOO_PYTHON313. LITEZOO_BUILDGRID_VENV names a ready venv instead (saves the install).
"""

import contextlib
import glob
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest

from litezoo.artifacts import manifest as manifest_lib
from litezoo.tests import nested_bazel, testing

FLOAT, INT8 = "//tests:tinyllama_tiny_float", "//tests:tinyllama_tiny_dynamic_int8"
HERE = pathlib.Path(__file__).absolute().parent
SERVER_CONFIG = """
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
connections:
  - !sql-connection &sql
    connection-string: {database}
    pool-size: 5
    pool-timeout: 30
    max-overflow: 10
storages:
  - !disk-storage &cas
    path: {root}/cas
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 4096
    allow-updates: true
    cache-failed-actions: false
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    action-cache: *ac
    storage: *cas
    property-set: !dynamic-property-set
      match-property-keys: []
      wildcard-property-keys: []
    bot-session-keepalive-timeout: 120
instances:
  - name: ""
    services:
      - !action-cache
        cache: *ac
      - !execution
        scheduler: *scheduler
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
thread-pool-size: 20
"""


def _python313() -> str:
  """The first python3.13 that runs: LITEZOO_PYTHON313, pyenv's versions, then PATH (where a
  pyenv shim answers `python3.13` only when 3.13 is the active version: "command not found")."""
  candidates = [os.environ.get("LITEZOO_PYTHON313"),
                *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"))),
                *sorted(glob.glob("/root/.pyenv/versions/3.13*/bin/python3.13")),
                shutil.which("python3.13")]
  for candidate in filter(None, candidates):
    with contextlib.suppress(OSError):
      if subprocess.run([candidate, "-c", "import venv"], capture_output=True,
                        check=False).returncode == 0:
        return candidate
  pytest.fail("BuildGrid 0.9.1 needs Python 3.13: none runs from PATH or pyenv; set "
              "LITEZOO_PYTHON313=/path/to/python3.13")


@pytest.fixture(scope="module")
def buildgrid_venv(tmp_path_factory) -> pathlib.Path:
  if os.environ.get("LITEZOO_BUILDGRID_VENV"):
    return pathlib.Path(os.environ["LITEZOO_BUILDGRID_VENV"])
  venv = tmp_path_factory.mktemp("buildgrid") / "venv"
  subprocess.run([_python313(), "-m", "venv", str(venv)], check=True)
  install = subprocess.run(
      [str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "--require-hashes", "-r",
       str(HERE / "buildgrid.lock")], capture_output=True, text=True, check=False)
  assert install.returncode == 0, install.stderr[-3000:]
  return venv


def _wait_for_port(port: int, process: subprocess.Popen, log: pathlib.Path, seconds: float):
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
      return
    assert process.poll() is None, log.read_text()[-3000:]
    time.sleep(0.2)
  pytest.fail(f"nothing listens on port {port} after {seconds} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def postgres(root: pathlib.Path):
  """A PostgreSQL server of its own on loopback (BuildGrid's scheduler supports no other
  database). PostgreSQL refuses to run as root; as root, it runs in a user namespace as uid 1000
  (`unshare`), not as the `postgres` user, who could not enter the test's temp dir under /root."""
  [bin_dir] = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [None]
  assert bin_dir, "PostgreSQL is not installed (Debian: apt-get install postgresql)"
  as_user = (["unshare", "--user", "--map-user=1000", "--map-group=1000", "--"]
             if os.getuid() == 0 else [])
  root.mkdir(parents=True)
  port = nested_bazel.free_port()
  data, log = root / "data", root / "postgres.log"
  subprocess.run([*as_user, f"{bin_dir}/initdb", "-D", str(data), "--auth=trust", "-U", "bgd",
                  "-E", "UTF8"], check=True, capture_output=True)
  # TCP only (-k ""): a Unix socket's path under Bazel's per-test temp dir is longer than the
  # 107 bytes a socket path may have.
  server = subprocess.Popen([*as_user, f"{bin_dir}/postgres", "-D", str(data), "-h",
                             "127.0.0.1", "-p", str(port), "-k", ""],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))  # pylint: disable=consider-using-with
  try:
    _wait_for_port(port, server, log, 60)
    time.sleep(1)
    subprocess.run([*as_user, f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U",
                    "bgd", "bgd"], check=True, capture_output=True)
    yield f"postgresql://bgd@127.0.0.1:{port}/bgd"
  finally:
    server.terminate()
    server.wait(30)


@contextlib.contextmanager
def started(command: list[str], log: pathlib.Path, **kwargs):
  process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                             **kwargs)
  try:
    yield process
  finally:
    process.terminate()
    try:
      process.wait(30)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


@pytest.fixture(scope="module")
def buildgrid(buildgrid_venv, tmp_path_factory):
  """grpc://127.0.0.1:PORT of BuildGrid's server with one host-tools worker; yields (address,
  the worker's log of executed actions)."""
  root = tmp_path_factory.mktemp("buildgrid-service")
  bgd = str(buildgrid_venv / "bin" / "bgd")
  with postgres(root / "postgres") as database:
    migrate = subprocess.run([bgd, "migrate", "apply", database], capture_output=True, text=True,
                             check=False)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    port = nested_bazel.free_port()
    config = root / "server.yml"
    config.write_text(SERVER_CONFIG.format(port=port, database=database, root=root))
    with started([bgd, "server", "start", str(config)], root / "server.log") as server:
      _wait_for_port(port, server, root / "server.log", 300)
      (root / "work").mkdir()
      executed = root / "executed.jsonl"
      venv = (nested_bazel.WORKSPACE / ".venv").resolve()
      with started([str(buildgrid_venv / "bin" / "python"), str(HERE / "reapi_worker.py"),
                    f"--remote=127.0.0.1:{port}", f"--work_dir={root / 'work'}",
                    f"--log={executed}", f"--venv={venv}"], root / "worker.log") as worker:
        deadline = time.monotonic() + 120
        while not (executed.exists() and executed.read_text()):  # the bot session is open
          assert worker.poll() is None, (root / "worker.log").read_text()[-3000:]
          assert time.monotonic() < deadline, (root / "worker.log").read_text()[-3000:]
          time.sleep(0.5)
        yield f"grpc://127.0.0.1:{port}", executed


def _executed(log: pathlib.Path) -> list[dict]:
  return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "executed"]


def _zoo(spawns: list[dict]) -> list[dict]:
  return [s for s in spawns if s["mnemonic"] in ("ZooArtifact", "ZooQuantize")]


def test_conversions_run_on_buildgrid(buildgrid, tmp_path):
  executor, executed = buildgrid
  bazel = nested_bazel.Bazel(tmp_path / "bazel")
  try:
    spawns = bazel.build(f"--remote_executor={executor}", "--remote_timeout=1800", FLOAT, INT8)
    zoo = _zoo(spawns)
    assert sorted(s["mnemonic"] for s in zoo) == ["ZooArtifact", "ZooQuantize"], spawns
    for spawn in zoo:  # executed remotely: no local fallback, no cache hit
      assert spawn["runner"] == "remote" and spawn["remotable"], spawn
      assert not spawn["remoteCacheHit"], spawn
      assert spawn["status"] in ("", "SUCCESS") and spawn["exitCode"] == 0, spawn
    # ... and on BuildGrid's worker: each conversion among what it executed, with its outputs.
    ran = _executed(executed)
    assert all("error" not in e and e["exit_code"] == 0 for e in ran), ran
    outputs = {o for e in ran for o in e["outputs"]}
    for spawn in zoo:
      declared = {o["path"] for o in spawn["actualOutputs"]}
      assert declared and declared <= outputs, (declared, outputs)
      assert any(spawn["listedOutputs"][0] in e["outputs"] for e in ran)

    # What came back is the model this checkout converts locally, byte for byte.
    out = bazel.bin() / "tests"
    for target in (FLOAT, INT8):
      name = target.split(":")[1]
      remote = manifest_lib.open_verified(out / f"{name}.tflite")
      local = testing.zoo_artifact(target)
      assert remote.manifest.sha256 == local.manifest.sha256, target
      assert remote.manifest.signatures == local.manifest.signatures

    # A clean output root: BuildGrid's action cache now serves both, nothing executes again.
    count = len(ran)
    bazel("clean", "--expunge")
    again = _zoo(bazel.build(f"--remote_executor={executor}", FLOAT, INT8))
    assert len(again) == 2 and all(s["remoteCacheHit"] for s in again), again
    assert len(_executed(executed)) == count
  finally:
    bazel.expunge()
  seconds = ", ".join(f"{e['run_seconds']:.0f} s" for e in ran if "run_seconds" in e)
  print(f"\nremote execution: {len(zoo)} conversion actions ran on BuildGrid's worker "
        f"({seconds}), then came from its action cache", file=sys.stderr)
