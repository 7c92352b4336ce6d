#!/usr/bin/env bash
# Orchard's offline delivery checks (no Google Cloud access, no registry).
#
#   fast    shellcheck (when installed); Dockerfile lint; cloudbuild.yaml through the Cloud SDK's parser
#           and substitution/waitFor/pinning checks; deploy.sh through the
#           real gcloud argument parser; terraform fmt, validate and test
#           against hashicorp/google 8.0.0 built from source; and the
#           planted-error tests of all of these. ~1.5 minutes once the provider
#           is cached (its first build takes 10-15 minutes on 2 cores).
#   images  both Dockerfiles built with podman from local stand-in base
#           images, the functions image answering Predict, the trainer image
#           training, the trained model served; planted Dockerfile errors.
#           Needs root. ~10 minutes cold, ~1-2 minutes warm.
#   all     fast, then images.
#
# Everything heavy is cached outside the checkout, so fresh clones reuse it:
# the provider and the images' Go build cache under ~/.cache/orchard
# (ORCHARD_CACHE_DIR moves it), the base images in podman's storage.
#
# Usage: infra/checks/run.sh [fast|images|all]
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
mode="${1:-fast}"
case "$mode" in fast | images | all) ;; *)
  echo "usage: $0 [fast|images|all]" >&2
  exit 2
  ;;
esac
cd "$repo"
checks=infra/checks

declare -a summary=()
step() { # step NAME COMMAND...
  local name=$1 start=$SECONDS
  shift
  echo
  echo "=== $name"
  if "$@"; then
    summary+=("ok    $(printf '%4d' $((SECONDS - start))) s  $name")
  else
    summary+=("FAIL  $(printf '%4d' $((SECONDS - start))) s  $name")
    report
    exit 1
  fi
}
report() {
  echo
  echo "=== infra/checks/run.sh $mode"
  printf '  %s\n' "${summary[@]}"
}

if [[ $mode == fast || $mode == all ]]; then
  if command -v shellcheck >/dev/null; then
    step "shellcheck (infra/checks, infra/docker)" shellcheck -x infra/checks/*.sh infra/docker/*.sh
  else
    echo "run.sh: shellcheck not installed; skipping the shell lint" >&2
  fi
  step "Dockerfile lint" python3 "$checks/dockerfile_lint.py" "$repo" infra/docker/functions.Dockerfile infra/docker/trainer.Dockerfile
  step "cloudbuild.yaml (Cloud SDK parser + checks)" "$checks/cloudbuild.sh"
  step "deploy.sh (gcloud argument parser, fake API)" "$checks/test-deploy.sh"
  step "terraform fmt/validate/test" "$checks/terraform.sh"
  step "planted errors (fast)" "$checks/planted-errors.sh" fast
fi
if [[ $mode == images || $mode == all ]]; then
  step "images: build and run (podman)" "$checks/images.sh" all
  step "planted errors (images)" "$checks/planted-errors.sh" images
fi
report
