# shellcheck shell=bash
# Sourced by the .ci/install-*.sh scripts (and copied beside
# install-turbojpeg.sh into the Docker build stage): apt-get as root or
# through passwordless sudo, and an install that refreshes stale or empty
# package lists once, as a fresh CI image or container often has them.
_apt_who="$(basename "$0" .sh)"

# Runs apt-get as root, through sudo when we are not root. Returns non-zero
# (without exiting) when that is impossible, so callers can explain why.
apt_get() {
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
  else
    echo "$_apt_who: cannot run apt-get (not root and no passwordless sudo)" >&2
    return 1
  fi
}

apt_updated=false
# Installs Debian packages; on failure, runs apt-get update once and retries.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || {
    echo "$_apt_who: apt-get not available on this machine" >&2
    return 1
  }
  if apt_get install -y --no-install-recommends "$@"; then
    return 0
  fi
  if [[ $apt_updated == false ]]; then
    apt_updated=true
    echo "$_apt_who: apt-get install failed; running apt-get update and retrying"
    apt_get update && apt_get install -y --no-install-recommends "$@"
    return
  fi
  return 1
}
