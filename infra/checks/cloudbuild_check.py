"""Offline checks of a cloudbuild.yaml, run with the Cloud SDK's Python.

1. The Cloud SDK's own client-side parser (what `gcloud builds submit` runs
   before uploading anything): YAML syntax, unknown fields, enum values,
   substitution key format, at least one step.
2. What the service would reject or misrun, which the parser does not check:
   - substitutions, as Cloud Build's default MUST_MATCH option does: every
     ${_VAR} used is declared, every declared one is used, every other
     ${VAR} is a built-in;
   - step ids are unique and waitFor names only earlier steps;
   - step images are pinned (a digest, or a tag other than "latest");
   - files the steps name (Dockerfiles, scripts under infra/) exist.

Usage: python3 cloudbuild_check.py SDK_ROOT CLOUDBUILD_YAML [REPO_ROOT]
"""

import os
import re
import sys

sdk_root, path = sys.argv[1], sys.argv[2]
repo = sys.argv[3] if len(sys.argv) > 3 else os.path.dirname(os.path.abspath(path))
sys.path[:0] = [os.path.join(sdk_root, "lib"), os.path.join(sdk_root, "lib", "third_party")]

from googlecloudsdk.api_lib.cloudbuild import cloudbuild_util  # noqa: E402
from googlecloudsdk.api_lib.cloudbuild import config  # noqa: E402

errors = []

try:
    build = config.LoadCloudbuildConfigFromPath(path, cloudbuild_util.GetMessagesModule())
except Exception as e:  # the SDK raises several types; all mean "invalid"
    print(f"cloudbuild: {path}: {e}", file=sys.stderr)
    sys.exit(1)

BUILTINS = {
    "PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME",
    "COMMIT_SHA", "REVISION_ID", "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME",
    "BRANCH_NAME", "TAG_NAME", "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT", "_HEAD_BRANCH", "_BASE_BRANCH",
    "_HEAD_REPO_URL", "_PR_NUMBER",
}
REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")

declared = {p.key for p in (build.substitutions.additionalProperties if build.substitutions else [])}


def refs(s):
    s = s.replace("$$", "")  # escaped dollar
    return {a or b for a, b in REF.findall(s)}


used = set()
strings = []  # (where, value)
for i, step in enumerate(build.steps):
    where = f"step {step.id or i}"
    strings += [(where, step.name or "")] + [(where, a) for a in step.args or []]
    strings += [(where, e) for e in step.env or []] + [(where, step.dir or ""), (where, step.entrypoint or "")]
    strings += [(where, s) for s in step.secretEnv or []]
strings += [("images", s) for s in build.images or []] + [("tags", s) for s in build.tags or []]
if build.serviceAccount:
    strings.append(("serviceAccount", build.serviceAccount))
if build.logsBucket:
    strings.append(("logsBucket", build.logsBucket))
for where, s in strings:
    for name in refs(s):
        used.add(name)
        if name.startswith("_") and name not in declared and name not in BUILTINS:
            errors.append(f"{where}: ${{{name}}} is not declared in substitutions")
        elif not name.startswith("_") and name not in BUILTINS:
            errors.append(f"{where}: ${name} is not a built-in substitution (write $${name} for a shell variable)")
for name in sorted(declared - used):
    errors.append(f"substitution {name} is declared but never used (Cloud Build rejects this under MUST_MATCH)")

seen = set()
for i, step in enumerate(build.steps):
    sid = step.id or f"#{i}"
    if step.id:
        if step.id in seen:
            errors.append(f"step id {step.id} is used twice")
        seen.add(step.id)
    for w in step.waitFor or []:
        if w != "-" and w not in seen - {step.id}:
            errors.append(f"step {sid}: waitFor {w!r} is not an earlier step's id")
    image = step.name or ""
    if "@sha256:" not in image:
        last = image.rsplit("/", 1)[-1]
        if ":" not in last or last.endswith(":latest"):
            errors.append(f"step {sid}: image {image!r} is not pinned (use a version tag or a digest)")
    for a in step.args or []:
        for m in re.finditer(r"(?:--file=|^)((?:infra|\.ci)/[\w./-]+\.(?:sh|Dockerfile))\b", a, re.M):
            f = os.path.join(repo, m.group(1))
            if not os.path.isfile(f):
                errors.append(f"step {sid}: {m.group(1)} does not exist")
            elif f.endswith(".sh") and not os.access(f, os.X_OK):
                errors.append(f"step {sid}: {m.group(1)} is not executable")
        for m in re.finditer(r"(?:^|[\s;&|])((?:infra|\.ci)/[\w./-]+\.sh)\b", a):
            f = os.path.join(repo, m.group(1))
            if not os.path.isfile(f):
                errors.append(f"step {sid}: {m.group(1)} does not exist")

if errors:
    for e in errors:
        print(f"cloudbuild: {path}: {e}", file=sys.stderr)
    sys.exit(1)
print(f"cloudbuild: {path}: valid ({len(build.steps)} steps, {len(declared)} substitutions)")
