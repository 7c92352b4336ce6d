#!/usr/bin/env bash
# Validates cloudbuild.yaml offline with the Cloud SDK's own parser plus the
# checks in cloudbuild_check.py. There is no Cloud Build dry run.
#
# Usage: infra/checks/cloudbuild.sh [CLOUDBUILD_YAML]
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
file="${1:-$repo/cloudbuild.yaml}"

gcloud_bin="$(command -v gcloud)" || { echo "cloudbuild.sh: the Cloud SDK (gcloud) is not installed" >&2; exit 1; }
sdk_root="$(cd "$(dirname "$(readlink -f "$gcloud_bin")")/.." && pwd)"
python="$sdk_root/platform/bundledpythonunix/bin/python3"
[[ -x $python ]] || python="${CLOUDSDK_PYTHON:-python3}"
[[ -d $sdk_root/lib/googlecloudsdk ]] || { echo "cloudbuild.sh: no Cloud SDK library under $sdk_root/lib" >&2; exit 1; }

"$python" "$repo/infra/checks/cloudbuild_check.py" "$sdk_root" "$file" "$repo"
