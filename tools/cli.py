"""The `litezoo` command of a pip install: `litezoo <tool> [flags]` runs tools/<tool>, exactly as
`bazel run //tools:<tool> -- [flags]` and `python -m litezoo.tools.<tool> [flags]` do."""

import runpy
import sys

TOOLS = ("convert", "generate", "serve", "verify", "evaluate", "bundle", "benchmark",
         "explore", "release", "new_plugin")


USAGE = (f"usage: litezoo <tool> [--flags]; tools: {', '.join(TOOLS)}; "
         "`litezoo <tool> --help` lists a tool's flags")


def main() -> None:
  if sys.argv[1:] in (["--help"], ["-h"], ["help"]):
    print(USAGE)
    return
  if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
    given = f"unknown tool {sys.argv[1]!r}; " if len(sys.argv) > 1 else ""
    print(f"litezoo: error: {given}{USAGE}", file=sys.stderr)
    sys.exit(2)
  tool = sys.argv.pop(1)
  sys.argv[0] = tool  # tools name themselves after argv[0] in their errors
  runpy.run_module(f"litezoo.tools.{tool}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
