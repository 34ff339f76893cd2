"""A converted model as a Bazel action: `zoo_artifact`, a .tflite and its manifest.

A test can take one as `artifacts` (bazel/defs.bzl zoo_py_test): the artifact cache's prebuilt
layer ($LITEZOO_PREBUILT) hands it to the test and to every tool the test starts, so a model is
converted once per change of its inputs instead of once per test process, and the conversion is
cached like any action: locally, in a shared remote cache, or run by a remote executor
(tests/remote_execution_test.py). tests/testing.py `zoo_artifact` opens one by label, verified.

One action per artifact, run by the plugin's own `artifact_tool` (tools/artifact.py):
ZooArtifact converts (declared inputs: the plugin's code and the lock through the Python
toolchain, the variant's pinned weight files if it has any; random-weight variants need nothing
else); ZooQuantize quantizes a float zoo_artifact (`float`), as the artifact cache does.
"""

load("//bazel:release.bzl", "ACTION_ENV")

ZooWeightsInfo = provider(
    doc = "A plugin's pinned weight files, as zoo_plugin(weights=, hub_cache=) declares them.",
    fields = {
        "files": "depset of the weight files (empty for weights from the Hugging Face cache)",
        "hub_cache": "the weights come from the Hugging Face cache, outside Bazel's sandbox",
    },
)

def _zoo_weights_impl(ctx):
    files = depset(ctx.files.srcs)
    return [
        DefaultInfo(files = files),
        ZooWeightsInfo(files = files, hub_cache = ctx.attr.hub_cache),
    ]

zoo_weights = rule(
    implementation = _zoo_weights_impl,
    doc = "A plugin's pinned weights (zoo_plugin makes one, `//plugins/<name>:weights`).",
    attrs = {
        "srcs": attr.label_list(allow_files = True),
        "hub_cache": attr.bool(),
    },
)

def _zoo_artifact_impl(ctx):
    tflite = ctx.actions.declare_file(ctx.label.name + ".tflite")
    manifest = ctx.actions.declare_file(ctx.label.name + ".manifest.json")
    model = ctx.attr.model
    args = ["--model=" + model, "--quantize=" + ctx.attr.recipe, "--out=" + tflite.path]
    if ctx.attr.variant:
        args.append("--variant=" + ctx.attr.variant)
    inputs = []
    requirements = {}
    if ctx.attr.float:
        if (ctx.attr.prefill_seq_lens or ctx.attr.kv_cache_max_len or ctx.attr.kv_layout or
            ctx.attr.verify_lengths or ctx.attr.decode_windows or ctx.attr.prefill_windows or
            ctx.attr.verify_windows):
            fail("a quantized zoo_artifact keeps the signatures of its float one; set them there")
        source = [f for f in ctx.files.float if f.extension == "tflite"]
        if len(source) != 1:
            fail("`float` must be one zoo_artifact (a .tflite and its manifest)")
        args.append("--float=" + source[0].path)
        inputs = ctx.files.float
        mnemonic, what = "ZooQuantize", "Quantizing"
    else:
        if ctx.attr.prefill_seq_lens:
            args.append("--prefill_seq_lens=" + ",".join([str(n) for n in ctx.attr.prefill_seq_lens]))
        if ctx.attr.kv_cache_max_len:
            args.append("--kv_cache_max_len=%d" % ctx.attr.kv_cache_max_len)
        if ctx.attr.kv_layout:
            args.append("--kv_layout=" + ctx.attr.kv_layout)
        for flag in ("verify_lengths", "decode_windows", "prefill_windows", "verify_windows"):
            values = getattr(ctx.attr, flag)
            if values == ["none"]:
                args.append("--%s=none" % flag)
            elif values:
                args.append("--%s=%s" % (flag, ",".join(values)))
        mnemonic, what = "ZooArtifact", "Converting"
    # A calibrated recipe (gptq) quantizing a float artifact reads the weights again (the tool
    # refuses them for any other recipe).
    if ctx.attr.weights:
        weights = ctx.attr.weights[ZooWeightsInfo]
        inputs = inputs + weights.files.to_list()
        args += ["--weights=" + f.path for f in weights.files.to_list()]
        if weights.hub_cache:
            requirements["no-sandbox"] = "1"
            requirements["no-remote"] = "1"  # the cache is on this machine only
    ctx.actions.run(
        executable = ctx.executable.tool,
        arguments = args,
        inputs = inputs,
        outputs = [tflite, manifest],
        env = ACTION_ENV,
        mnemonic = mnemonic,
        progress_message = "%s %s (%s) for %s" % (what, model, ctx.attr.recipe, ctx.label),
        execution_requirements = requirements,
    )
    files = [tflite, manifest]
    return [DefaultInfo(files = depset(files), runfiles = ctx.runfiles(files = files))]

_zoo_artifact = rule(
    implementation = _zoo_artifact_impl,
    attrs = {
        "model": attr.string(mandatory = True),
        "variant": attr.string(),
        "recipe": attr.string(default = "none"),
        "prefill_seq_lens": attr.int_list(),
        "kv_cache_max_len": attr.int(),
        "kv_layout": attr.string(),
        # Strings: lengths, or ["none"] for no such signatures (unset: the plugin's that fit).
        "verify_lengths": attr.string_list(),
        "decode_windows": attr.string_list(),
        "prefill_windows": attr.string_list(),
        "verify_windows": attr.string_list(),
        "float": attr.label(allow_files = True),
        "weights": attr.label(providers = [ZooWeightsInfo]),
        "tool": attr.label(mandatory = True, executable = True, cfg = "exec"),
    },
)

def zoo_artifact(
        name,
        model,
        variant = None,
        recipe = "none",
        prefill_seq_lens = [],
        kv_cache_max_len = 0,
        kv_layout = "",
        verify_lengths = [],
        decode_windows = [],
        prefill_windows = [],
        verify_windows = [],
        float = None,
        pinned_weights = False,
        **kwargs):
    """`<name>.tflite` and `<name>.manifest.json`: `model`'s `variant` converted with `recipe`.

    Signatures left unset are the plugin's (`verify_lengths`/`decode_windows`/`prefill_windows`/
    `verify_windows`: lengths, or ["none"] for no such signatures). With `float` (a zoo_artifact with recipe "none"), the
    artifact is that one quantized with `recipe` (seconds) instead of a second conversion.
    `pinned_weights` says the variant loads the plugin's pinned weights (`//plugins/<model>:weights`
    become inputs); test-sized variants have seeded random weights and read nothing but code.
    """
    _zoo_artifact(
        name = name,
        model = model,
        variant = variant,
        recipe = recipe,
        prefill_seq_lens = prefill_seq_lens,
        kv_cache_max_len = kv_cache_max_len,
        kv_layout = kv_layout,
        verify_lengths = [str(n) for n in verify_lengths],
        decode_windows = [str(n) for n in decode_windows],
        prefill_windows = [str(n) for n in prefill_windows],
        verify_windows = [str(n) for n in verify_windows],
        float = float,
        weights = "//plugins/%s:weights" % model if pinned_weights else None,
        tool = "//plugins/%s:artifact_tool" % model,
        **kwargs
    )
