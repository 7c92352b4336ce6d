#!/usr/bin/env bash
# Installs (or checks) libjpeg-turbo's TurboJPEG development files, which
# shared/preprocess links statically through cgo: the header turbojpeg.h and
# the archive libturbojpeg.a, both in Debian's libturbojpeg0-dev (1:2.1.5 on
# bookworm, 2.1.5 on Ubuntu 24.04). Binaries built with it need no
# libjpeg-turbo at run time.
#
# Safe to run repeatedly: it installs only when a file is missing.
#
# Usage: .ci/install-turbojpeg.sh [--check]
#   --check  report what is missing and exit non-zero, but install nothing.
set -euo pipefail

readonly PACKAGE="libturbojpeg0-dev"

check_only=false
case "${1:-}" in
  "") ;;
  --check) check_only=true ;;
  -h | --help)
    sed -n '2,12p' "$0"
    exit 0
    ;;
  *)
    echo "install-turbojpeg: unknown argument: $1 (try --help)" >&2
    exit 2
    ;;
esac

log() { echo "install-turbojpeg: $*"; }

# present: the header and the static archive where the C compiler finds them.
present() {
  local lib
  lib="$(${CC:-cc} -print-file-name=libturbojpeg.a 2>/dev/null || true)"
  [[ -f /usr/include/turbojpeg.h && $lib == /* && -f $lib ]]
}

if present; then
  log "$PACKAGE present ($(${CC:-cc} -print-file-name=libturbojpeg.a))"
  exit 0
fi
if [[ $check_only == true ]]; then
  echo "install-turbojpeg: ERROR: turbojpeg.h or libturbojpeg.a missing; run $0 (apt-get install $PACKAGE)" >&2
  exit 1
fi

# shellcheck source=.ci/apt.sh
source "$(dirname "$0")/apt.sh" # apt_install

log "installing $PACKAGE"
apt_install "$PACKAGE" || { echo "install-turbojpeg: ERROR: could not install $PACKAGE" >&2; exit 1; }
present || { echo "install-turbojpeg: ERROR: $PACKAGE installed but turbojpeg.h or libturbojpeg.a still missing" >&2; exit 1; }
log "installed $PACKAGE"
