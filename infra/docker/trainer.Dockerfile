# Orchard trainer image: the Go trainer (GoMLX pure-Go backend, SIMD build)
# that Vertex AI custom jobs run. Vertex passes the subcommand and flags as
# the container args, e.g. ["train", "-data", "gs://...", ...], and sets
# AIP_MODEL_DIR / AIP_CHECKPOINT_DIR / AIP_TENSORBOARD_LOG_DIR.
#
# Build from the repository root, after fetching onnxruntime into the build
# context (the trainer verifies its ONNX export with onnxruntime):
#
#   infra/scripts/fetch-onnxruntime.sh .cache/onnxruntime
#   docker build -f infra/docker/trainer.Dockerfile -t trainer .
#
# Base images: see functions.Dockerfile (same pins, same reason for the ARGs).
ARG GO_IMAGE=docker.io/library/golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${GO_IMAGE} AS build
# See functions.Dockerfile.
ARG ORT_SHA256_AMD64=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
ARG ORT_SHA256_ARM64=7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab
# GOEXPERIMENT=simd: GoMLX's pure-Go backend uses SIMD kernels only with it
# (2-2.5x faster training).
ENV CGO_ENABLED=1 GOFLAGS=-mod=readonly GOTOOLCHAIN=local GOEXPERIMENT=simd
WORKDIR /src

# libjpeg-turbo's TurboJPEG API (turbojpeg.h and libturbojpeg.a, Debian's
# libturbojpeg0-dev), which shared/preprocess links statically: the runtime
# image needs no extra library. The script installs it only when missing, so
# the offline checks' local base image, which has it, needs no network.
COPY .ci/apt.sh .ci/install-turbojpeg.sh /usr/local/bin/
RUN install-turbojpeg.sh

COPY go.mod go.sum ./
RUN go mod download

# onnxruntime, checked before the (frequently rebuilt) source layers.
COPY .cache/onnxruntime/libonnxruntime.so.1 /out/onnxruntime/libonnxruntime.so.1
RUN case "$(dpkg --print-architecture)" in \
      amd64) sum="${ORT_SHA256_AMD64}" ;; \
      arm64) sum="${ORT_SHA256_ARM64}" ;; \
      *) echo "no pinned onnxruntime for $(dpkg --print-architecture)" >&2; exit 1 ;; \
    esac \
    && echo "${sum}  /out/onnxruntime/libonnxruntime.so.1" | sha256sum -c -

# Only what the binary imports (go list -deps ./trainer/cmd/trainer).
COPY shared/ shared/
COPY trainer/ trainer/
RUN go build -trimpath -ldflags='-s -w' -o /out/trainer ./trainer/cmd/trainer

FROM ${RUNTIME_IMAGE}
ARG SOURCE_REVISION=unknown
COPY --from=build /out/onnxruntime/libonnxruntime.so.1 /opt/onnxruntime/lib/libonnxruntime.so.1
COPY --from=build /out/trainer /usr/local/bin/trainer
ENV ORT_LIB=/opt/onnxruntime/lib/libonnxruntime.so.1 \
    ORCHARD_SOURCE_REVISION=${SOURCE_REVISION} \
    HOME=/home/nonroot
LABEL org.opencontainers.image.title="orchard-trainer" \
      org.opencontainers.image.source="https://github.com/orchard-mlops/orchard" \
      org.opencontainers.image.revision="${SOURCE_REVISION}"
USER 65532:65532
WORKDIR /home/nonroot
ENTRYPOINT ["/usr/local/bin/trainer"]
