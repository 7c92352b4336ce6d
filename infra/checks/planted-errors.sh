#!/usr/bin/env bash
# Shows that every check catches what it is for: each case copies the file
# under test to a temporary directory, plants one error, runs the check on
# the copy and requires a non-zero exit with the expected message. The
# repository is never modified.
#
# Usage: infra/checks/planted-errors.sh [fast|images|all]
#   fast    Terraform (fmt, validate, test), cloudbuild.yaml, deploy.sh,
#           Dockerfile lint (seconds)
#   images  broken Dockerfile build step, broken runtime image (podman, root)
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
mode="${1:-fast}"
checks="$repo/infra/checks"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0
# expect_failure NAME PATTERN COMMAND...: COMMAND must exit non-zero and print PATTERN.
expect_failure() {
  local name=$1 pattern=$2 start=$SECONDS out rc=0
  shift 2
  out="$("$@" 2>&1)" || rc=$?
  if ((rc != 0)) && grep -qE -- "$pattern" <<<"$out"; then
    echo "  caught  $name ($((SECONDS - start)) s): $(grep -m1 -E -- "$pattern" <<<"$out" | sed 's/^[[:space:]]*//' | cut -c1-110)"
    passed=$((passed + 1))
  else
    echo "  MISSED  $name: exit $rc, expected /$pattern/; output:" >&2
    tail -15 <<<"$out" >&2
    failed=$((failed + 1))
  fi
}

# plant FILE SED_EXPR: apply, and make sure it changed something.
plant() {
  local before
  before="$(sha256sum "$1")"
  sed -i -E "$2" "$1"
  [[ "$(sha256sum "$1")" != "$before" ]] || { echo "planted-errors: '$2' changed nothing in $1" >&2; exit 1; }
}

tf_copy() { # fresh copy of infra/terraform in $tmp/$1
  rm -rf "${tmp:?}/$1"
  mkdir -p "$tmp/$1"
  (cd "$repo/infra/terraform" && tar -c --exclude=.terraform --exclude=.terraform.lock.hcl .) | tar -C "$tmp/$1" -x
  echo "$tmp/$1"
}

if [[ $mode == fast || $mode == all ]]; then
  echo "planted-errors: Terraform"
  d="$(tf_copy tf-fmt)"
  plant "$d/storage.tf" 's/^(  uniform_bucket_level_access) = true/\1 =   true/'
  expect_failure "terraform fmt: misaligned argument" 'storage.tf' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-fmt" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-validate)"
  plant "$d/storage.tf" 's/uniform_bucket_level_access = true/uniform_bucket_level_accesz = true/'
  expect_failure "terraform validate: misspelt argument" 'An argument named "uniform_bucket_level_accesz" is not expected' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-validate" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-type)"
  plant "$d/pubsub.tf" 's/max_delivery_attempts = var.max_delivery_attempts/max_delivery_attempts = "five"/'
  expect_failure "terraform validate: wrong type for a provider attribute" 'Incorrect attribute value type|a number is required' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-type" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-test)"
  plant "$d/iam.tf" 's/\["trainer", "roles\/logging.logWriter"\]/["trainer", "roles\/editor"]/'
  expect_failure "terraform test: primitive role granted" 'a project grant uses a primitive role' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-test" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-pin)"
  # shellcheck disable=SC2016 # a literal ${local...} is the planted error
  plant "$d/main.tf" 's#^(  model_uri = ).*$#\1"${local.registry_uri}/models/${var.model_name}/versions/v1"#'
  expect_failure "terraform test: predictors pinned by default (never follow promotions)" 'a service pins MODEL_URI by default' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-pin" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-iam)"
  # The pre-fix grant: objectCreator cannot replace a result.
  plant "$d/iam.tf" 's#\["predict_on_upload", "results", "roles/storage.objectUser"\]#["predict_on_upload", "results", "roles/storage.objectCreator"]#'
  expect_failure "IAM check: a storage call the grants do not cover" 'needs storage.objects.delete on results' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-iam" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-monitor-write)"
  # The monitor given write on the whole results bucket (every result).
  plant "$d/iam.tf" 's#\["monitor", "results", "roles/storage.objectViewer"\]#["monitor", "results", "roles/storage.objectUser"]#'
  expect_failure "terraform test: the monitor may write every result" 'the monitor may write beyond monitoring/' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-monitor-write" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-monitor-read)"
  # A condition too narrow for the baselines of every model.
  plant "$d/iam.tf" 's#\["monitor", "models", "roles/storage.objectViewer", \["models/"\]\]#["monitor", "models", "roles/storage.objectViewer", ["models/fruits/"]]#'
  expect_failure "IAM check: the monitor cannot read a baseline" 'storage.objects.get on models/models/\* \(the baseline.json' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-monitor-read" "$checks/terraform.sh" "$d"

  d="$(tf_copy tf-dashboard)"
  plant "$d/monitoring.tf" 's#container/instance_count#container/instances#g'
  expect_failure "terraform test: the dashboard charts a metric nobody writes" 'the dashboard charts a metric that neither' \
    env TF_CHECK_WORKDIR="$tmp/tf-work-dashboard" "$checks/terraform.sh" "$d"

  echo "planted-errors: cloudbuild.yaml"
  cp "$repo/cloudbuild.yaml" "$tmp/unknown-field.yaml"
  plant "$tmp/unknown-field.yaml" "0,/^    waitFor: \['onnxruntime'\]$/s//    waitFor: ['onnxruntime']\n    timeoutz: 600s/"
  expect_failure "cloudbuild: unknown step field" 'timeoutz: unused' "$checks/cloudbuild.sh" "$tmp/unknown-field.yaml"

  cp "$repo/cloudbuild.yaml" "$tmp/bad-enum.yaml"
  plant "$tmp/bad-enum.yaml" 's/machineType: E2_HIGHCPU_8/machineType: E2_HIGHCPU_9/'
  expect_failure "cloudbuild: invalid enum value" 'machineType' "$checks/cloudbuild.sh" "$tmp/bad-enum.yaml"

  cp "$repo/cloudbuild.yaml" "$tmp/undeclared.yaml"
  # shellcheck disable=SC2016 # a literal ${_REPO} is the planted error
  plant "$tmp/undeclared.yaml" '0,/\$\{_REPOSITORY\}/s//${_REPO}/'
  expect_failure "cloudbuild: undeclared substitution" '_REPO\} is not declared' "$checks/cloudbuild.sh" "$tmp/undeclared.yaml"

  cp "$repo/cloudbuild.yaml" "$tmp/waitfor.yaml"
  plant "$tmp/waitfor.yaml" "s/waitFor: \['test', 'build-trainer'\]/waitFor: ['test', 'build-trainr']/"
  expect_failure "cloudbuild: waitFor names no step" "waitFor 'build-trainr'" "$checks/cloudbuild.sh" "$tmp/waitfor.yaml"

  echo "planted-errors: deploy.sh (real gcloud argument parser)"
  cp "$repo/infra/docker/deploy.sh" "$tmp/deploy.sh"
  plant "$tmp/deploy.sh" 's/--no-allow-unauthenticated/--no-allow-unauthenticatd/'
  expect_failure "deploy.sh: misspelt gcloud flag" 'unrecognized arguments: --no-allow-unauthenticatd' \
    "$checks/test-deploy.sh" "$tmp/deploy.sh"

  cp "$repo/infra/docker/deploy.sh" "$tmp/deploy-public.sh"
  plant "$tmp/deploy-public.sh" 's/--no-allow-unauthenticated/--allow-unauthenticated/'
  expect_failure "deploy.sh: a public function" 'FAIL predict: not public' "$checks/test-deploy.sh" "$tmp/deploy-public.sh"

  cp "$repo/infra/docker/deploy.sh" "$tmp/deploy-pinned.sh"
  # shellcheck disable=SC2016 # a literal ${MODEL_URI...} is the planted error
  plant "$tmp/deploy-pinned.sh" 's#^MODEL_URI="\$\{MODEL_URI:-\}"$#MODEL_URI="${MODEL_URI:-gs://$BUCKET_PREFIX-models/models/fruits/versions/v1}"#'
  expect_failure "deploy.sh: predictors pinned by default (never follow promotions)" 'FAIL predict: no MODEL_URI pin by default' \
    "$checks/test-deploy.sh" "$tmp/deploy-pinned.sh"

  echo "planted-errors: Dockerfile lint"
  mkdir -p "$tmp/lint"
  cp "$repo/infra/docker/functions.Dockerfile" "$tmp/lint/"
  plant "$tmp/lint/functions.Dockerfile" 's/^(ARG RUNTIME_IMAGE=[^@]+)@sha256:[0-9a-f]+$/\1/'
  expect_failure "Dockerfile: base image not pinned by digest" 'not pinned by digest' \
    python3 "$checks/dockerfile_lint.py" "$repo" "$tmp/lint/functions.Dockerfile"
  cp "$repo/infra/docker/trainer.Dockerfile" "$tmp/lint/"
  plant "$tmp/lint/trainer.Dockerfile" 's/^USER 65532:65532$/USER root/'
  expect_failure "Dockerfile: runs as root" 'not a numeric non-root' \
    python3 "$checks/dockerfile_lint.py" "$repo" "$tmp/lint/trainer.Dockerfile"
fi

if [[ $mode == images || $mode == all ]]; then
  echo "planted-errors: images (podman)"
  mkdir -p "$tmp/docker-build" "$tmp/docker-run"
  cp "$repo/infra/docker/"*.Dockerfile "$tmp/docker-build/"
  plant "$tmp/docker-build/functions.Dockerfile" 's#\./functions/cmd/functions$#./functions/cmd/functionz#'
  expect_failure "Dockerfile: broken build step" 'functionz.*(not in std|no required module|cannot find|directory not found|does not contain)' \
    env IMAGE_TAG=planted "$checks/images.sh" functions "$tmp/docker-build"

  cp "$repo/infra/docker/"*.Dockerfile "$tmp/docker-run/"
  plant "$tmp/docker-run/functions.Dockerfile" 's#^ENV ORT_LIB=/opt/onnxruntime/lib/libonnxruntime.so.1#ENV ORT_LIB=/opt/onnxruntime/libonnxruntime.so.1#'
  expect_failure "Dockerfile: image builds but cannot serve (ORT_LIB wrong)" 'Predict failed|did not answer' \
    env IMAGE_TAG=planted "$checks/images.sh" functions "$tmp/docker-run"
fi

if [[ $mode == images || $mode == all ]] && command -v podman >/dev/null; then
  CONTAINERS_CONF="$repo/.cache/podman/containers.conf" podman rmi -f localhost/orchard/functions:planted >/dev/null 2>&1 || true
fi
echo "planted-errors: $passed caught, $failed missed"
((failed == 0))
