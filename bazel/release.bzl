"""A model's pinned release as Bazel actions with declared inputs (see tools/releases/pins.py).

Actions, so each is cached (locally or in a shared remote cache) on its own inputs: ZooConvert
(weights -> float .tflite), one ZooQuantize per shipped recipe (float .tflite -> the plugin's
recipe's .tflite, and `<model>-<key>.tflite` for each of `recipes`), ZooBundle (.tflite +
tokenizer -> .task, .litertlm) and ZooDescribe (files + lock + figures -> manifest.json,
MODEL_CARD.md).
"""

# Fixed, so the actions' keys do not depend on the machine; Python finds the venv itself.
# Shared with zoo_artifact (bazel/artifact.bzl).
ACTION_ENV = {
    "PATH": "/usr/bin:/bin",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONHASHSEED": "0",
}

def _zoo_release_impl(ctx):
    model, variant = ctx.attr.model, ctx.attr.variant
    out = ctx.label.name + "/"
    tflite = ctx.actions.declare_file(out + model + ".tflite")
    tflite_manifest = ctx.actions.declare_file(out + model + ".manifest.json")
    bundles = {fmt: ctx.actions.declare_file(out + model + "." + fmt) for fmt in ctx.attr.formats}
    manifest = ctx.actions.declare_file(out + "manifest.json")
    card = ctx.actions.declare_file(out + "MODEL_CARD.md")
    tool = ctx.executable.tool
    common = ["--model=" + model] + (["--variant=" + variant] if variant else [])
    weights = ctx.files.weights
    weight_args = ["--weights=" + f.path for f in weights]
    requirements = {"no-sandbox": "1"} if ctx.attr.hub_cache else {}

    # One float conversion (minutes); each shipped recipe quantizes it (seconds; a calibrated
    # recipe also reads the weights again).
    float_tflite = ctx.actions.declare_file(ctx.label.name + "_float/" + model + ".tflite")
    float_manifest = ctx.actions.declare_file(ctx.label.name + "_float/" + model + ".manifest.json")
    ctx.actions.run(
        executable = tool,
        arguments = common + weight_args + ["--step=convert", "--recipe=none",
                                            "--tflite=" + float_tflite.path],
        inputs = weights,
        outputs = [float_tflite, float_manifest],
        env = ACTION_ENV,
        mnemonic = "ZooConvert",
        progress_message = "Converting %s for its release" % model,
        execution_requirements = requirements,
    )
    extras = {}
    shipped = [(None, tflite, tflite_manifest)]
    for key, recipe in ctx.attr.recipes.items():
        extra = ctx.actions.declare_file(out + model + "-" + key + ".tflite")
        extras[extra] = ctx.actions.declare_file(out + model + "-" + key + ".manifest.json")
        shipped.append((recipe, extra, extras[extra]))
    for recipe, target, target_manifest in shipped:
        ctx.actions.run(
            executable = tool,
            arguments = common + weight_args + ["--step=quantize", "--float=" + float_tflite.path,
                                                "--tflite=" + target.path] +
                        (["--recipe=" + recipe] if recipe else []),
            inputs = weights + [float_tflite, float_manifest],
            outputs = [target, target_manifest],
            env = ACTION_ENV,
            mnemonic = "ZooQuantize",
            progress_message = "Quantizing %s (%s) for its release" % (model, recipe or "its recipe"),
            execution_requirements = requirements,
        )
    ctx.actions.run(
        executable = tool,
        arguments = common + weight_args + [
            "--step=bundle",
            "--tflite=" + tflite.path,
        ] + ["--%s=%s" % (fmt, f.path) for fmt, f in bundles.items()],
        inputs = weights + [tflite, tflite_manifest],
        outputs = bundles.values(),
        env = ACTION_ENV,
        mnemonic = "ZooBundle",
        progress_message = "Bundling %s (%s)" % (model, ", ".join(["." + f for f in bundles])),
        execution_requirements = requirements,
    )
    ctx.actions.run(
        executable = tool,
        arguments = common + [
            "--step=describe",
            "--lock=" + ctx.file.lock.path,
            "--tflite=" + tflite.path,
        ] + ["--%s=%s" % (fmt, f.path) for fmt, f in bundles.items()] + [
            "--extra_tflite=" + f.path for f in extras
        ] + [
            "--manifest=" + manifest.path,
            "--card=" + card.path,
        ] + ["--figures=" + f.path for f in ctx.files.figures],
        inputs = [tflite, tflite_manifest, ctx.file.lock] + bundles.values() + ctx.files.figures +
                 extras.keys() + extras.values(),
        outputs = [manifest, card],
        env = ACTION_ENV,
        mnemonic = "ZooDescribe",
        progress_message = "Writing the manifest and model card of %s" % model,
    )
    files = [tflite, tflite_manifest] + extras.keys() + extras.values() + bundles.values() + [
        manifest,
        card,
    ]
    return [DefaultInfo(files = depset(files))]

zoo_release = rule(
    implementation = _zoo_release_impl,
    doc = "A model's release: .tflite (default recipe, and any `recipes`), bundles, manifest.json, " +
          "MODEL_CARD.md.",
    attrs = {
        "model": attr.string(mandatory = True),
        "variant": attr.string(doc = "Default: the plugin's default variant."),
        "tool": attr.label(mandatory = True, executable = True, cfg = "exec"),
        "weights": attr.label_list(allow_files = True, doc = "The variant's pinned weight files."),
        "hub_cache": attr.bool(doc = "Weights come from the Hugging Face cache (pinned by " +
                                     "revision and sha256), outside Bazel's sandbox."),
        "formats": attr.string_list(default = ["task", "litertlm"], doc = "Bundles to ship."),
        "recipes": attr.string_dict(doc = "More .tflite files shipped beside the default " +
                                          "recipe's: `<model>-<key>.tflite` quantized with " +
                                          "the recipe, from the same float conversion."),
        "lock": attr.label(default = "//:requirements.lock", allow_single_file = True),
        "figures": attr.label(default = "//docs:figures", allow_files = True),
    },
)
