#!/usr/bin/env bash
# Builds the hashicorp/google Terraform provider from its Go source (the
# Terraform registry is out of reach here; the Go module proxy is not) and puts
# it in a filesystem mirror that `terraform init` can use offline.
#
# The build is ~9 minutes of CPU and a 184 MB binary, so it runs once: the
# binary is kept under ~/.cache/orchard/terraform/ (outside the checkout) and reused while `go version -m`
# reports the pinned module version.
#
# Usage: infra/checks/install-provider.sh [MIRROR_DIR]
#   MIRROR_DIR defaults to ${ORCHARD_CACHE_DIR:-~/.cache/orchard}/terraform/providers
# Prints nothing but progress; exits non-zero if the build fails.
set -euo pipefail

# hashicorp/google 8.0.0, as the Go proxy serves it (the repository's tags are
# not Go-module versions, so the proxy only knows a pseudo-version).
readonly PROVIDER_MODULE="github.com/hashicorp/terraform-provider-google"
readonly PROVIDER_PSEUDO="v1.20.1-0.20260828184646-f3721fb45fa3"
readonly PROVIDER_VERSION="8.0.0"

mirror="${1:-${ORCHARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchard}/terraform/providers}"
os="$(go env GOOS)"
arch="$(go env GOARCH)"
dir="$mirror/registry.terraform.io/hashicorp/google/$PROVIDER_VERSION/${os}_$arch"
bin="$dir/terraform-provider-google_v$PROVIDER_VERSION"

built_version() {
  [[ -x $1 ]] || return 0
  go version -m "$1" 2>/dev/null | awk -v m="$PROVIDER_MODULE" '$1 == "mod" && $2 == m { print $3; exit }' || true
}

if [[ "$(built_version "$bin")" == "$PROVIDER_PSEUDO" ]]; then
  echo "install-provider: hashicorp/google $PROVIDER_VERSION already in $mirror"
  exit 0
fi

echo "install-provider: building hashicorp/google $PROVIDER_VERSION from $PROVIDER_MODULE@$PROVIDER_PSEUDO (about 9 minutes on 2 cores)..."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
# Outside the repository so its go.mod and GOFLAGS cannot interfere; nice'd
# because the machine is shared. -trimpath and -s -w only shrink the binary.
(cd / && GOFLAGS="" GOBIN="$tmp" CGO_ENABLED=0 nice -n 10 \
  go install -trimpath -ldflags='-s -w' "$PROVIDER_MODULE@$PROVIDER_PSEUDO")
mkdir -p "$dir"
mv "$tmp/terraform-provider-google" "$bin.tmp"
mv "$bin.tmp" "$bin"
[[ "$(built_version "$bin")" == "$PROVIDER_PSEUDO" ]] || {
  echo "install-provider: built binary does not report $PROVIDER_PSEUDO" >&2
  exit 1
}
echo "install-provider: built in $((SECONDS - start)) s: $bin"
