"""Static checks of Orchard's Dockerfiles (no container engine needed).

For each Dockerfile:
  - every base image is pinned by digest: FROM names a stage, or an ARG whose
    default is repo[:tag]@sha256:<64 hex>, or such a reference itself;
  - there are at least two stages (build and runtime), and the runtime stage
    copies from the build stage rather than building;
  - the runtime stage runs as a non-root numeric USER, has no RUN (the
    distroless base has no shell), sets ORT_LIB, and has an exec-form
    ENTRYPOINT;
  - files COPY'd from the build context exist.

Usage: python3 dockerfile_lint.py REPO_ROOT DOCKERFILE...
"""

import os
import re
import sys

repo = sys.argv[1]
DIGEST = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
failed = False


def instructions(text):
    """(lineno, keyword, rest) with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        kw, _, rest = buf.strip().partition(" ")
        out.append((start, kw.upper(), rest.strip()))
        buf = ""
    return out


for path in sys.argv[2:]:
    errs = []
    ins = instructions(open(path).read())
    args, stages, cur = {}, [], None
    for n, kw, rest in ins:
        if kw == "ARG" and cur is None:
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
        elif kw == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            ref, alias = m.group(1), m.group(2)
            cur = {"line": n, "ref": ref, "alias": alias, "ins": []}
            stages.append(cur)
            names = {s["alias"] for s in stages[:-1] if s["alias"]}
            am = re.fullmatch(r"\$\{?(\w+)\}?", ref)
            if ref in names:
                pass
            elif am:
                default = args.get(am.group(1))
                if default is None:
                    errs.append(f"line {n}: FROM {ref}: no global ARG {am.group(1)} with a default")
                elif not DIGEST.match(default):
                    errs.append(f"line {n}: FROM {ref}: ARG default {default!r} is not pinned by digest")
            elif not DIGEST.match(ref) and ref != "scratch":
                errs.append(f"line {n}: FROM {ref}: not pinned by digest")
        elif cur is not None:
            cur["ins"].append((n, kw, rest))
        if kw == "COPY" and "--from=" not in rest:
            for src in rest.split()[:-1]:
                if src.startswith("--"):
                    continue
                if src.startswith(".cache/"):
                    continue  # fetched into the context by the build (cloudbuild.yaml, images.sh)
                if not os.path.exists(os.path.join(repo, src)):
                    errs.append(f"line {n}: COPY {src}: not in the build context (the repository root)")
    if len(stages) < 2:
        errs.append("expected a multi-stage build (build + runtime)")
    else:
        final = stages[-1]["ins"]
        kws = [k for _, k, _ in final]
        users = [r for _, k, r in final if k == "USER"]
        if not users:
            errs.append("runtime stage: no USER (it would run as root)")
        elif not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
            errs.append(f"runtime stage: USER {users[-1]} is not a numeric non-root uid[:gid]")
        if "RUN" in kws:
            errs.append("runtime stage: RUN needs a shell, which the distroless base does not have")
        if not any(k == "ENV" and "ORT_LIB=" in r for _, k, r in final):
            errs.append("runtime stage: ORT_LIB is not set")
        eps = [r for _, k, r in final if k == "ENTRYPOINT"]
        if not eps or not eps[-1].startswith("["):
            errs.append("runtime stage: ENTRYPOINT missing or not in exec form")
        if not any(k == "COPY" and "--from=" in r for _, k, r in final):
            errs.append("runtime stage: copies nothing from the build stage")
    for e in errs:
        print(f"dockerfile: {path}: {e}", file=sys.stderr)
    failed |= bool(errs)
    if not errs:
        print(f"dockerfile: {path}: ok ({len(stages)} stages, bases pinned by digest, non-root)")
sys.exit(1 if failed else 0)
