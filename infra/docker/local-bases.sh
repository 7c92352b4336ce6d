#!/usr/bin/env bash
# Builds local stand-ins for the two base images the Dockerfiles pin, for
# machines that cannot pull from a registry (the offline checks). The
# Dockerfiles are unchanged: the checks pass these names as the GO_IMAGE and
# RUNTIME_IMAGE build args, whose defaults are the pinned public images.
#
#   localhost/orchard-local/golang:<go version>-bookworm
#       ~ golang:1.26.8-bookworm: Debian bookworm (debootstrap minbase) with
#       gcc, libc6-dev, git, make, curl, libturbojpeg0-dev (which the
#       Dockerfiles would otherwise apt-get) and this machine's /usr/local/go;
#       GOPATH=/go, GOTOOLCHAIN=local, PATH as in the official image.
#   localhost/orchard-local/distroless-cc:debian12-nonroot
#       ~ gcr.io/distroless/cc-debian12:nonroot: no shell, no package manager;
#       only the files of libc6, libgcc-s1, libgomp1, libstdc++6, libssl3,
#       ca-certificates, tzdata, netbase and base-files (as distroless builds
#       it), users root/nobody/nonroot(65532), USER 65532.
#
# Each image is built once and reused while its recipe (RECIPE below, the Go
# version) is unchanged. Needs root, podman, debootstrap and Debian apt.
#
# Usage: infra/docker/local-bases.sh [--print]   (--print: only print the names)
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
go_version="$(go env GOVERSION)"  # e.g. go1.26.8
go_version="${go_version#go}"
# Bump RECIPE when the recipes below change, to rebuild existing images.
RECIPE=2
recipe="r$RECIPE-go$go_version"

GO_IMAGE="localhost/orchard-local/golang:$go_version-bookworm"
RUNTIME_IMAGE="localhost/orchard-local/distroless-cc:debian12-nonroot"
if [[ ${1:-} == --print ]]; then
  echo "GO_IMAGE=$GO_IMAGE"
  echo "RUNTIME_IMAGE=$RUNTIME_IMAGE"
  exit 0
fi

# shellcheck source=infra/checks/podman-env.sh
source "$repo/infra/checks/podman-env.sh"
podman_setup

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$repo/.cache/podman/bases"
mkdir -p "$work"

current() { # image has the label of this recipe
  [[ "$(podman image inspect --format '{{index .Labels "orchard.local.recipe"}}' "$1" 2>/dev/null || true)" == "$recipe" ]]
}

if [[ $go_version != 1.26.8 ]]; then
  echo "local-bases: note: this machine has Go $go_version; the Dockerfiles pin golang:1.26.8-bookworm" >&2
fi

if current "$GO_IMAGE"; then
  echo "local-bases: $GO_IMAGE is up to date"
else
  echo "local-bases: building $GO_IMAGE (debootstrap, about a minute)"
  rootfs="$work/golang-rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase \
    --include=ca-certificates,curl,gcc,git,libc6-dev,libturbojpeg0-dev,make,pkg-config \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  cp -a "$(go env GOROOT)" "$rootfs/usr/local/go"
  mkdir -p "$rootfs/go/bin" "$rootfs/go/src"
  chmod -R 1777 "$rootfs/go"
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --quiet \
    --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV GOPATH=/go' \
    --change 'ENV GOTOOLCHAIN=local' \
    --change "ENV GOLANG_VERSION=$go_version" \
    --change 'WORKDIR /go' \
    --change 'CMD ["bash"]' \
    --change "LABEL orchard.local.recipe=$recipe" \
    - "$GO_IMAGE" >/dev/null
  rm -rf "$rootfs"
  echo "local-bases: built $GO_IMAGE"
fi

if current "$RUNTIME_IMAGE"; then
  echo "local-bases: $RUNTIME_IMAGE is up to date"
else
  echo "local-bases: building $RUNTIME_IMAGE (from Debian packages)"
  rootfs="$work/distroless-rootfs"
  debs="$work/debs"
  rm -rf "$rootfs" "$debs"
  mkdir -p "$rootfs" "$debs"
  pkgs=(base-files ca-certificates libc6 libgcc-s1 libgomp1 libssl3 libstdc++6 netbase tzdata)
  (cd "$debs" && apt-get download "${pkgs[@]}" >/dev/null 2>&1) ||
    (apt-get update >/dev/null && cd "$debs" && apt-get download "${pkgs[@]}" >/dev/null)
  for deb in "$debs"/*.deb; do
    dpkg-deb -x "$deb" "$rootfs"
  done
  # ca-certificates ships the certificates; the bundle is made by its
  # postinst, which never runs here: take this (bookworm) machine's bundle.
  mkdir -p "$rootfs/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  # No shell, no package manager, no documentation.
  rm -rf "${rootfs:?}/bin" "${rootfs:?}/sbin" "${rootfs:?}/usr/bin" "${rootfs:?}/usr/sbin" \
    "${rootfs:?}/usr/share/doc" "${rootfs:?}/usr/share/man" "${rootfs:?}/usr/share/lintian" "${rootfs:?}/usr/share/info"
  cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
  cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
  mkdir -p "$rootfs/tmp" "$rootfs/root" "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  chown 65532:65532 "$rootfs/home/nonroot"
  chmod 0700 "$rootfs/home/nonroot"
  tar -C "$rootfs" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'USER 65532' \
    --change 'WORKDIR /home/nonroot' \
    --change "LABEL orchard.local.recipe=$recipe" \
    - "$RUNTIME_IMAGE" >/dev/null
  rm -rf "$rootfs" "$debs"
  echo "local-bases: built $RUNTIME_IMAGE"
fi
