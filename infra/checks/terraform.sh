#!/usr/bin/env bash
# Offline Terraform checks for a configuration directory (default
# infra/terraform): `terraform fmt -check -recursive`, then `terraform init
# -backend=false`, `terraform validate` and `terraform test` (tests/*.tftest.hcl:
# a mocked provider, no credentials) against the real hashicorp/google
# provider, built from source into a filesystem mirror by install-provider.sh.
#
# Nothing is written into the configuration directory: it is copied to a
# scratch directory under $ORCHARD_CACHE_DIR/terraform/work/, where init writes
# .terraform/ and the lock file (which would pin the hash of a self-built
# binary, so it never belongs in the repository).
#
# Usage: infra/checks/terraform.sh [CONFIG_DIR]
# Environment: TF_CHECK_WORKDIR  scratch directory to use (default: one per
#              CONFIG_DIR under the cache's terraform/work/)
#              ORCHARD_CACHE_DIR  default ${XDG_CACHE_HOME:-~/.cache}/orchard
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$(cd "${1:-$repo/infra/terraform}" && pwd)"
# Outside the checkout, so that a fresh clone on the same machine (CI) reuses
# the provider build (~10 minutes).
cache="${ORCHARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchard}/terraform"

command -v terraform >/dev/null || { echo "terraform.sh: terraform is not installed" >&2; exit 1; }

"$repo/infra/checks/install-provider.sh" "$cache/providers"

# A CLI config that installs hashicorp/google from the mirror only: with no
# `direct` block, nothing is ever fetched from a registry.
export TF_CLI_CONFIG_FILE="$cache/terraformrc"
cat >"$TF_CLI_CONFIG_FILE" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$cache/providers"
    include = ["registry.terraform.io/hashicorp/google"]
  }
}
disable_checkpoint = true
RC
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
unset TF_DATA_DIR TF_WORKSPACE

echo "terraform: fmt -check -recursive $dir"
if ! terraform fmt -check -recursive -list=true "$dir"; then
  echo "terraform: the files above need \`terraform fmt\`" >&2
  exit 1
fi

# One scratch directory per configuration directory, kept between runs so
# that init finds .terraform/ already set up.
work="${TF_CHECK_WORKDIR:-$cache/work/$(printf '%s' "$dir" | sha256sum | cut -c1-16)}"
mkdir -p "$work"
find "$work" -mindepth 1 -maxdepth 1 ! -name .terraform ! -name .terraform.lock.hcl -exec rm -rf {} +
(cd "$dir" && tar -c --exclude=.terraform --exclude=.terraform.lock.hcl --exclude='*.tfstate*' .) | tar -C "$work" -x

echo "terraform: init -backend=false (hashicorp/google from $cache/providers)"
if ! out="$(cd "$work" && terraform init -backend=false -no-color 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
echo "terraform: validate $dir"
(cd "$work" && terraform validate -no-color) || {
  echo "terraform: validate failed (file names are relative to $dir)" >&2
  exit 1
}

if [[ -d $work/tests ]]; then
  echo "terraform: test (mocked provider: no credentials, no API calls)"
  (cd "$work" && terraform test -no-color) || {
    echo "terraform: test failed (file names are relative to $dir)" >&2
    exit 1
  }
fi
