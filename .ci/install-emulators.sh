#!/usr/bin/env bash
# Installs (or checks) the emulators that the cloud-facing tests start through
# the shared/emulators package:
#   - fake-gcs-server (Cloud Storage), built with `go install` at a pinned version
#     into $(go env GOPATH)/bin, which is where shared/emulators looks for it;
#   - the Cloud SDK Pub/Sub emulator (a Java program) and a Java runtime.
#
# Safe to run repeatedly: it only installs what is missing or at the wrong version.
#
# Usage: .ci/install-emulators.sh [--check]
#   --check  report what is missing and exit non-zero, but install nothing.
#
# Environment:
#   PUBSUB_EMULATOR_BIN  path of cloud-pubsub-emulator (same variable the Go harness reads)
set -euo pipefail

readonly FAKE_GCS_MODULE="github.com/fsouza/fake-gcs-server"
readonly FAKE_GCS_VERSION="v1.56.1"
readonly DEFAULT_PUBSUB_BIN="/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
readonly PUBSUB_APT_PACKAGE="google-cloud-cli-pubsub-emulator"

check_only=false
case "${1:-}" in
  "") ;;
  --check) check_only=true ;;
  -h | --help)
    sed -n '2,14p' "$0"
    exit 0
    ;;
  *)
    echo "install-emulators: unknown argument: $1 (try --help)" >&2
    exit 2
    ;;
esac

log() { echo "install-emulators: $*"; }
fail() {
  echo "install-emulators: ERROR: $*" >&2
  exit 1
}

# shellcheck source=.ci/apt.sh
source "$(dirname "$0")/apt.sh" # apt_get, apt_install

### fake-gcs-server ###########################################################

command -v go >/dev/null 2>&1 || fail "go is not on PATH; it is needed to build fake-gcs-server"

# GOPATH may be a list; go install uses the first entry.
gopath="$(go env GOPATH)"
gopath="${gopath%%:*}"
gobin="$gopath/bin"
fake_gcs="$gobin/fake-gcs-server"

# Prints the module version a Go binary was built from, or nothing.
installed_version() {
  [[ -x $1 ]] || return 0
  # `|| true`: a non-Go file makes `go version -m` fail, which under pipefail
  # and set -e would abort the script instead of meaning "not installed".
  go version -m "$1" 2>/dev/null | awk -v mod="$FAKE_GCS_MODULE" '$1 == "mod" && $2 == mod { print $3; exit }' || true
}

have="$(installed_version "$fake_gcs")"
if [[ $have == "$FAKE_GCS_VERSION" ]]; then
  log "fake-gcs-server $FAKE_GCS_VERSION already installed at $fake_gcs"
elif [[ $check_only == true ]]; then
  fail "fake-gcs-server $FAKE_GCS_VERSION missing at $fake_gcs (found: ${have:-none}); run $0"
else
  log "installing fake-gcs-server $FAKE_GCS_VERSION into $gobin (found: ${have:-none})"
  # Run outside any module so the repository's go.mod and a GOFLAGS=-mod=...
  # setting cannot interfere with `go install pkg@version`.
  # -v through progress.sh: a cold build is minutes of otherwise silent compiling.
  progress="$(cd "$(dirname "$0")/.." && pwd)/infra/scripts/progress.sh"
  (cd / && GOBIN="$gobin" GOFLAGS='' "$progress" "go install fake-gcs-server $FAKE_GCS_VERSION" \
    "about 4 min on 2 cores" go install -v "$FAKE_GCS_MODULE@$FAKE_GCS_VERSION")
  have="$(installed_version "$fake_gcs")"
  [[ $have == "$FAKE_GCS_VERSION" ]] || fail "after go install, $fake_gcs reports version '${have:-none}'"
  log "installed fake-gcs-server $FAKE_GCS_VERSION at $fake_gcs"
fi

### Java ######################################################################

# The emulator's start script prefers $JAVA_HOME/bin/java, then java on PATH.
java_cmd() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java || true
  fi
}
java_ok() {
  local j
  j="$(java_cmd)"
  [[ -n $j ]] && "$j" -version >/dev/null 2>&1
}

if java_ok; then
  log "java available: $("$(java_cmd)" -version 2>&1 | head -n1)"
elif [[ $check_only == true ]]; then
  fail "java not found; the Pub/Sub emulator needs a Java runtime (11+); run $0"
else
  log "java not found; installing default-jre-headless"
  apt_install default-jre-headless || fail "could not install a Java runtime; install Java 11+ and rerun"
  java_ok || fail "java still not usable after installing default-jre-headless"
  log "installed java: $("$(java_cmd)" -version 2>&1 | head -n1)"
fi

### Pub/Sub emulator ##########################################################

pubsub_bin="${PUBSUB_EMULATOR_BIN:-$DEFAULT_PUBSUB_BIN}"
if [[ -x $pubsub_bin ]]; then
  log "Pub/Sub emulator present at $pubsub_bin"
elif [[ -n ${PUBSUB_EMULATOR_BIN:-} ]]; then
  # An explicit path that is wrong is a configuration error; do not paper over it.
  fail "PUBSUB_EMULATOR_BIN=$PUBSUB_EMULATOR_BIN is not an executable file"
elif [[ $check_only == true ]]; then
  fail "Pub/Sub emulator missing at $pubsub_bin; run $0"
else
  log "Pub/Sub emulator missing at $pubsub_bin; trying apt-get install $PUBSUB_APT_PACKAGE"
  if ! apt_install "$PUBSUB_APT_PACKAGE" || [[ ! -x $pubsub_bin ]]; then
    cat >&2 <<EOF
install-emulators: ERROR: could not install the Pub/Sub emulator.
  The Debian package $PUBSUB_APT_PACKAGE comes from Google's Cloud SDK apt
  repository (https://packages.cloud.google.com/apt cloud-sdk main), which must
  be configured. Alternatives:
    - gcloud components install pubsub-emulator   (non-apt Cloud SDK installs)
    - set PUBSUB_EMULATOR_BIN to an existing cloud-pubsub-emulator script
EOF
    exit 1
  fi
  log "installed $PUBSUB_APT_PACKAGE ($pubsub_bin)"
fi

log "all emulators ready"
