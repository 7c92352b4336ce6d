#!/usr/bin/env bash
# Fetches libonnxruntime.so.1 for onnxruntime_go. Microsoft ships the shared
# library inside the npm package onnxruntime-node, and npm's registry is
# reachable where GitHub releases may not be, so the tarball comes from npm,
# pinned by version and sha256.
#
# Usage: fetch-onnxruntime.sh DEST_DIR   (writes DEST_DIR/libonnxruntime.so.1)
set -euo pipefail

VERSION=1.24.1
SHA256=57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772

dest=${1:?usage: fetch-onnxruntime.sh DEST_DIR}
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "fetch-onnxruntime: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

if [[ -f "$dest/libonnxruntime.so.1" && "$(cat "$dest/VERSION" 2>/dev/null)" == "$VERSION-$arch" ]]; then
  echo "onnxruntime $VERSION ($arch) already at $dest"
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-onnxruntime: npm is required (apt-get install -y npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching onnxruntime-node@$VERSION from npm..."
(cd "$tmp" && npm pack --silent "onnxruntime-node@$VERSION" >/dev/null)
tgz="$tmp/onnxruntime-node-$VERSION.tgz"
echo "$SHA256  $tgz" | sha256sum -c --quiet - || {
  echo "fetch-onnxruntime: sha256 mismatch for onnxruntime-node-$VERSION.tgz" >&2
  exit 1
}
member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
tar -xzf "$tgz" -C "$tmp" "$member"
mkdir -p "$dest"
install -m 0644 "$tmp/$member" "$dest/libonnxruntime.so.1.tmp"
mv "$dest/libonnxruntime.so.1.tmp" "$dest/libonnxruntime.so.1"
echo "$VERSION-$arch" >"$dest/VERSION"
echo "onnxruntime $VERSION ($arch) installed at $dest/libonnxruntime.so.1"
