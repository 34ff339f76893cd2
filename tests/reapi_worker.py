"""A host-tools worker for BuildGrid: takes actions through the Remote Workers API (Bots), runs
each on this host in a scratch directory staged from CAS, and reports its ActionResult.

BuildGrid's own worker is BuildBox (buildbox-worker with buildbox-run-hosttools, C++), which is
neither on PyPI nor in Debian; BuildGrid's Python bot (`bgd bot`) was removed years before 0.9.
This is the same loop in Python, run by tests/remote_execution_test.py with the Python of the
BuildGrid venv (it imports BuildGrid's generated protos):

    python reapi_worker.py --remote=127.0.0.1:PORT --work_dir=DIR --log=FILE --venv=PATH

The execution platform's Python is provided as a container image would provide it: the
workspace's Python toolchain (bazel/venv_python.bzl) is a stub beside which a `venv` link names
the venv, and that link is not an input; the worker adds it, pointing at `--venv`, in every
staged `venv_python` directory. One line of JSON per executed action goes to `--log`.
"""

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time
import uuid

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc
from buildgrid._protos.google.rpc import code_pb2

BOT_STATUS_OK = 1
LEASE_ACTIVE, LEASE_COMPLETED = 2, 4
BATCH_LIMIT = 1 << 20  # blobs above 1 MiB go through ByteStream, below in batches
CHUNK = 1 << 20


class Cas:
  """Reads and writes blobs of one instance (SHA-256 digests)."""

  def __init__(self, channel, instance: str):
    self.instance = instance
    self.cas = re_grpc.ContentAddressableStorageStub(channel)
    self.bytestream = bytestream_pb2_grpc.ByteStreamStub(channel)

  def read(self, digest) -> bytes:
    if digest.size_bytes == 0:
      return b""
    if digest.size_bytes <= BATCH_LIMIT:
      response = self.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(
          instance_name=self.instance, digests=[digest]))
      [blob] = response.responses
      if blob.status.code != code_pb2.OK:
        raise RuntimeError(f"CAS read of {digest.hash}: {blob.status.message}")
      return blob.data
    prefix = f"{self.instance}/" if self.instance else ""
    name = f"{prefix}blobs/{digest.hash}/{digest.size_bytes}"
    return b"".join(r.data for r in self.bytestream.Read(
        bytestream_pb2.ReadRequest(resource_name=name)))

  def message(self, digest, message):
    message.ParseFromString(self.read(digest))
    return message

  def write(self, data: bytes):
    digest = re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    if len(data) <= BATCH_LIMIT:
      response = self.cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
          instance_name=self.instance,
          requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest, data=data)]))
      [blob] = response.responses
      if blob.status.code != code_pb2.OK:
        raise RuntimeError(f"CAS write of {digest.hash}: {blob.status.message}")
      return digest
    prefix = f"{self.instance}/" if self.instance else ""
    name = f"{prefix}uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"

    def chunks():
      for offset in range(0, len(data), CHUNK):
        yield bytestream_pb2.WriteRequest(
            resource_name=name if offset == 0 else "", write_offset=offset,
            data=data[offset:offset + CHUNK], finish_write=offset + CHUNK >= len(data))

    self.bytestream.Write(chunks())
    return digest


def stage(cas: Cas, digest, directory: pathlib.Path, venv: str | None) -> int:
  """Writes the input tree `digest` into `directory`; returns the number of files."""
  tree = cas.message(digest, re_pb2.Directory())
  directory.mkdir(parents=True, exist_ok=True)
  count = 0
  for f in tree.files:
    path = directory / f.name
    path.write_bytes(cas.read(f.digest))
    path.chmod(0o555 if f.is_executable else 0o444)
    count += 1
  for link in tree.symlinks:
    (directory / link.name).symlink_to(link.target)
  for sub in tree.directories:
    count += stage(cas, sub.digest, directory / sub.name, venv)
  if venv and directory.name == "venv_python" and (directory / "python3").exists():
    (directory / "venv").symlink_to(venv)
  return count


def execute(cas: Cas, action, root: pathlib.Path, venv: str | None, bot_id: str) -> dict:
  """Runs `action` in `root`; returns {"result": ActionResult, ...} for the log."""
  command = cas.message(action.command_digest, re_pb2.Command())
  start = time.time()
  files = stage(cas, action.input_root_digest, root, venv)
  staged = time.time()
  cwd = root / command.working_directory
  for output in list(command.output_files) + list(command.output_paths):
    (cwd / output).parent.mkdir(parents=True, exist_ok=True)
  if command.output_directories:
    raise RuntimeError("output directories are not supported by this worker")
  env = {v.name: v.value for v in command.environment_variables}
  timeout = action.timeout.seconds or None
  run = subprocess.run(list(command.arguments), cwd=cwd, env=env, capture_output=True,
                       timeout=timeout, check=False)
  ran = time.time()
  result = re_pb2.ActionResult(exit_code=run.returncode)
  for output in list(command.output_files) + list(command.output_paths):
    path = cwd / output
    if path.is_file():
      result.output_files.add(path=output, digest=cas.write(path.read_bytes()),
                              is_executable=os.access(path, os.X_OK))
  result.stdout_digest.CopyFrom(cas.write(run.stdout))
  result.stderr_digest.CopyFrom(cas.write(run.stderr))
  result.execution_metadata.worker = bot_id
  return {"result": result, "arguments": list(command.arguments)[:3], "exit_code": run.returncode,
          "input_files": files, "stage_seconds": round(staged - start, 2),
          "run_seconds": round(ran - staged, 2),
          "outputs": sorted(o.path for o in result.output_files),
          "stderr_tail": run.stderr.decode(errors="replace")[-2000:] if run.returncode else ""}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--remote", required=True)
  parser.add_argument("--instance", default="")
  parser.add_argument("--work_dir", required=True)
  parser.add_argument("--log", required=True)
  parser.add_argument("--venv")
  args = parser.parse_args()
  channel = grpc.insecure_channel(args.remote, options=[
      ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
  cas, bots = Cas(channel, args.instance), bots_pb2_grpc.BotsStub(channel)
  bot_id = f"litezoo-host-worker-{os.getpid()}"
  session = bots_pb2.BotSession(bot_id=bot_id, status=BOT_STATUS_OK)
  session = bots.CreateBotSession(bots_pb2.CreateBotSessionRequest(
      parent=args.instance, bot_session=session), timeout=60)
  log = open(args.log, "a", buffering=1)  # pylint: disable=consider-using-with
  log.write(json.dumps({"event": "session", "name": session.name}) + "\n")
  running: dict[str, threading.Thread] = {}
  done: dict[str, dict] = {}
  while True:
    for lease in session.leases:
      if lease.state == LEASE_ACTIVE and lease.id not in running:
        def work(lease=lease):
          action = re_pb2.Action()
          if lease.payload.Is(re_pb2.Action.DESCRIPTOR):
            lease.payload.Unpack(action)
            digest = hashlib.sha256(action.SerializeToString()).hexdigest()
          else:
            found = re_pb2.Digest()
            lease.payload.Unpack(found)
            cas.message(found, action)
            digest = found.hash
          root = pathlib.Path(args.work_dir) / uuid.uuid4().hex
          try:
            done[lease.id] = {"action": digest, **execute(cas, action, root, args.venv, bot_id)}
          except Exception as e:  # pylint: disable=broad-except
            done[lease.id] = {"action": digest, "error": f"{type(e).__name__}: {e}"}
          finally:
            shutil.rmtree(root, ignore_errors=True)
        running[lease.id] = threading.Thread(target=work, daemon=True)
        running[lease.id].start()
      if lease.id in done and lease.state == LEASE_ACTIVE:
        report = done[lease.id]
        lease.state = LEASE_COMPLETED
        if "error" in report:
          lease.status.code = code_pb2.INTERNAL
          lease.status.message = report["error"]
        else:
          lease.status.code = code_pb2.OK
          lease.result.Pack(report.pop("result"))
        log.write(json.dumps({"event": "executed", "lease": lease.id, **report}) + "\n")
    # A heartbeat while work runs (BuildGrid requeues the work of a silent bot); a long poll
    # for new work when idle.
    busy = any(lease.id in running and lease.id not in done for lease in session.leases)
    try:
      session = bots.UpdateBotSession(bots_pb2.UpdateBotSessionRequest(
          name=session.name, bot_session=session), timeout=5 if busy else 60)
    except grpc.RpcError as e:
      if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
        raise
      time.sleep(1)
    if busy:
      time.sleep(1)
    for lease_id in [i for i in done if i not in {l.id for l in session.leases}]:
      done.pop(lease_id)
      running.pop(lease_id, None)


if __name__ == "__main__":
  main()
