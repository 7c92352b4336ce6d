# shellcheck shell=bash
# Sourced by the image checks: makes rootful podman usable on a machine with
# no Docker daemon and no registry access (see /work/shared/notes/platform.md):
#   - installs podman, runc and (for local base images) debootstrap, with
#     apt, only when missing;
#   - uses a private containers.conf (runc runtime, explicit ulimits) through
#     CONTAINERS_CONF, leaving the machine's /etc/containers alone;
#   - provides podman_build, which never pulls and never creates a network.
# Expects $repo (the repository root).

podman_conf_dir="${repo:?}/.cache/podman"

podman_ensure_installed() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  [[ ${IMAGES_BASES:-local} != local ]] || command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
  ((${#missing[@]} == 0)) && return 0
  echo "checks: installing ${missing[*]} (apt)"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" uidmap >/dev/null ||
    { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" uidmap >/dev/null; }
}

podman_setup() {
  podman_ensure_installed
  if [[ $(id -u) -ne 0 ]]; then
    echo "checks: the image checks need root (rootful podman, debootstrap)" >&2
    return 1
  fi
  mkdir -p "$podman_conf_dir"
  cat >"$podman_conf_dir/containers.conf" <<'CONF'
# Written by infra/checks/podman-env.sh. crun fails on this cgroup layout;
# the default ulimits are too high for the machine's hard limits.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF="$podman_conf_dir/containers.conf"
}

# podman_build ARGS...: a build that cannot pull and needs no network
# (--isolation=oci: no bridge, no iptables rules).
podman_build() {
  podman build --pull=never --network=none --isolation=oci "$@"
}

podman_image_exists() {
  podman image exists "$1" 2>/dev/null
}
