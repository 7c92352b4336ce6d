#!/usr/bin/env bash
# Builds both Dockerfiles with podman, offline, and runs the images:
#   - the functions image (FUNCTION_TARGET=Predict, MODEL_URI=file:///model
#     with the known-answer colour model mounted read-only) must answer
#     Predict requests with the right labels;
#   - the trainer image must generate a small dataset and complete a short
#     training run that writes model.onnx and model.json.
#
# The Dockerfiles are used unchanged: nothing can be pulled here, so the
# pinned base images are replaced through the GO_IMAGE / RUNTIME_IMAGE build
# args by local stand-ins (infra/docker/local-bases.sh, built once). The Go
# module cache is mounted into the build (no network), and a Go build cache
# under ~/.cache/orchard/podman/go-build makes rebuilds incremental.
#
# Usage: infra/checks/images.sh [functions|trainer|all] [DOCKERFILE_DIR]
#   DOCKERFILE_DIR: where functions.Dockerfile and trainer.Dockerfile are
#   (default infra/docker; the planted-error test passes a copy).
# Environment:
#   IMAGE_TAG     tag of the images built (default "check"), so that
#                 planted-error runs do not replace the real ones.
#   IMAGES_BASES  local (default): stand-in base images, no pulls, no network;
#                 pinned: the Dockerfiles' own pinned images, pulled (where a
#                 registry is reachable, e.g. GitHub Actions), which also
#                 proves the digests resolve.
# Needs root, podman, runc, debootstrap (installed with apt when missing).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
what="${1:-all}"
dockerfiles="$(cd "${2:-$repo/infra/docker}" && pwd)"
cd "$repo"

# shellcheck source=infra/checks/podman-env.sh
source infra/checks/podman-env.sh
podman_setup

bases="${IMAGES_BASES:-local}"
base_args=()
case "$bases" in
  local)
    infra/docker/local-bases.sh
    eval "$(infra/docker/local-bases.sh --print)" # GO_IMAGE, RUNTIME_IMAGE
    base_args=(--build-arg "GO_IMAGE=$GO_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE")
    ;;
  pinned)
    # The pinned references, pulled once; the build itself stays offline.
    sed -n -E 's/^ARG (GO|RUNTIME)_IMAGE=(.*)$/\2/p' "$dockerfiles/functions.Dockerfile" "$dockerfiles/trainer.Dockerfile" |
      sort -u | while read -r ref; do
      podman pull -q "$ref" >/dev/null || { echo "images: cannot pull $ref" >&2; exit 1; }
      echo "images: pulled $ref"
    done
    ;;
  *) echo "images: IMAGES_BASES must be local or pinned" >&2; exit 2 ;;
esac
infra/scripts/fetch-onnxruntime.sh .cache/onnxruntime >/dev/null

gomodcache="$(go env GOMODCACHE)"
echo "images: go mod download (host, to fill the module cache the build mounts)"
go mod download

tag="${IMAGE_TAG:-check}"
# Outside the checkout, so that a fresh clone on the same machine (CI) builds
# incrementally.
gobuild_cache="${ORCHARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchard}/podman/go-build"
mkdir -p "$gobuild_cache"

build() { # build NAME: image localhost/orchard/NAME:$tag
  local name=$1 start=$SECONDS log="$repo/.cache/podman/build-$1-$tag.log"
  echo "images: building $name from $dockerfiles/$name.Dockerfile"
  podman_build \
    --file "$dockerfiles/$name.Dockerfile" \
    "${base_args[@]}" \
    --build-arg "SOURCE_REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --volume "$gomodcache:/go/pkg/mod:ro" \
    --volume "$gobuild_cache:/root/.cache/go-build" \
    --layers --tag "localhost/orchard/$name:$tag" \
    . >"$log" 2>&1 || {
    tail -40 "$log" >&2
    echo "images: building $name FAILED (log: ${log#"$repo"/})" >&2
    return 1
  }
  echo "images: built localhost/orchard/$name:$tag in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "localhost/orchard/$name:$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
  local user
  user="$(podman image inspect --format '{{.Config.User}}' "localhost/orchard/$name:$tag")"
  [[ $user == 65532:65532 ]] || { echo "images: $name runs as '$user', expected 65532:65532" >&2; return 1; }
}

tmp="$(mktemp -d)"
container=""
cleanup() {
  [[ -z $container ]] || podman rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_functions MODEL_DIR: runs the functions image serving Predict with the
# model directory mounted read-only; sets $container and $url.
start_functions() {
  local model=$1 port
  port="$(free_port)"
  # Host networking: no bridge or iptables rules; the server listens on
  # 127.0.0.1:$port only (HOST). PORT is Cloud Run's contract.
  container="$(podman run -d --rm --network=host \
    -e FUNCTION_TARGET=Predict -e PORT="$port" -e HOST=127.0.0.1 \
    -e MODEL_URI=file:///model \
    -v "$model:/model:ro" \
    "localhost/orchard/functions:$tag")"
  url="http://127.0.0.1:$port/"
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    podman container exists "$container" || break
    sleep 0.1
  done
  podman logs "$container" >&2 || true
  echo "images: functions: the server did not answer on $url" >&2
  return 1
}

stop_functions() {
  podman rm -f "$container" >/dev/null
  container=""
}

# predict FILE CONTENT_TYPE: prints the top label.
predict() {
  curl -fsS -H "Content-Type: $2" --data-binary "@$1" "$url" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["predictions"][0]["label"])' || {
    podman logs "$container" >&2 || true
    echo "images: functions: Predict failed for $1" >&2
    return 1
  }
}

check_functions() {
  build functions
  echo "images: functions: writing the colour model and test images"
  ORCHARD_IMAGECHECK_DIR="$tmp/fixtures" go test -count=1 -tags imagecheck -run TestWriteFixtures ./infra/checks/imagecheck >/dev/null
  chmod -R a+rX "$tmp/fixtures"
  start_functions "$tmp/fixtures/model"
  local img ctype want got
  for triple in red.png:image/png:red blue.jpg:image/jpeg:blue green.png:image/png:green; do
    IFS=: read -r img ctype want <<<"$triple"
    got="$(predict "$tmp/fixtures/$img" "$ctype")"
    [[ $got == "$want" ]] || { echo "images: functions: Predict said $got for $img, expected $want" >&2; return 1; }
    echo "images: functions: Predict $img -> $got"
  done
  stop_functions
}

check_trainer() {
  build trainer
  mkdir -p "$tmp/train"
  chown 65532:65532 "$tmp/train"
  local run=(podman run --rm --network=none -v "$tmp/train:/work" -e GOMAXPROCS=2 "localhost/orchard/trainer:$tag")
  echo "images: trainer: gen-data"
  "${run[@]}" gen-data -out /work/data -classes 3 -per-class 16 -size 32 >"$tmp/gen.log" 2>&1 ||
    { cat "$tmp/gen.log" >&2; echo "images: trainer: gen-data failed" >&2; return 1; }
  echo "images: trainer: train (1 epoch, tiny model)"
  local start=$SECONDS
  "${run[@]}" train -data /work/data -out /work/model \
    -set train.epochs=1 -set train.batch_size=16 -set model.widths=[8,16] \
    -set augment.enabled=false -set report.enabled=false >"$tmp/train.log" 2>&1 ||
    { tail -30 "$tmp/train.log" >&2; echo "images: trainer: training failed" >&2; return 1; }
  for f in model.onnx model.json; do
    [[ -s $tmp/train/model/$f ]] || { tail -30 "$tmp/train.log" >&2; echo "images: trainer: no $f written" >&2; return 1; }
  done
  # The trainer checks its export with onnxruntime: proof the library loads.
  grep -q '"onnx verified"' "$tmp/train.log" ||
    { tail -30 "$tmp/train.log" >&2; echo "images: trainer: no onnxruntime verification in the log" >&2; return 1; }
  echo "images: trainer: trained in $((SECONDS - start)) s; wrote model.onnx ($(stat -c %s "$tmp/train/model/model.onnx") bytes) and model.json, verified with onnxruntime"
}

# The trainer's output, served unchanged by the functions image.
check_handoff() {
  chmod -R a+rX "$tmp/train/model"
  start_functions "$tmp/train/model"
  local sample label
  sample="$(find "$tmp/train/data" -type f \( -name '*.png' -o -name '*.jpg' \) | head -n1)"
  label="$(predict "$sample" "$([[ $sample == *.png ]] && echo image/png || echo image/jpeg)")"
  python3 -c 'import json,sys; sys.exit(0 if sys.argv[2] in json.load(open(sys.argv[1]))["labels"] else 1)' \
    "$tmp/train/model/model.json" "$label" ||
    { echo "images: Predict with the trained model answered $label, not one of its labels" >&2; return 1; }
  echo "images: functions image serves the trainer image's model: $(basename "$sample") -> $label"
  stop_functions
}

case "$what" in
  functions) check_functions ;;
  trainer) check_trainer ;;
  all) check_functions; check_trainer; check_handoff ;; # plain calls: set -e does not apply inside a function called from an && list
  *) echo "usage: $0 [functions|trainer|all] [DOCKERFILE_DIR]" >&2; exit 2 ;;
esac
# Each build leaves untagged intermediate images (mostly the ~700 MB build
# stage). Drop those made from the local stand-in bases (they carry its
# label), never anyone else's; the Go build cache keeps rebuilds incremental.
podman image prune -f --filter label=orchard.local.recipe >/dev/null 2>&1 || true
echo "images: ok ($what)"
