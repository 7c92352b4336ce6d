# Orchard functions image: the Functions Framework server with every function
# (Predict, PredictOnUpload, SubmitTraining). A deployment picks one with
# FUNCTION_TARGET, which the framework then serves at "/" on $PORT. The
# batch prediction job runs /usr/local/bin/batch from the same image.
#
# Build from the repository root, after fetching onnxruntime into the build
# context (cloudbuild.yaml's first step does this with the same script):
#
#   infra/scripts/fetch-onnxruntime.sh .cache/onnxruntime
#   docker build -f infra/docker/functions.Dockerfile -t functions .
#
# Base images are pinned by digest (multi-arch index digests). The ARGs only
# exist so that offline checks can substitute locally built stand-ins
# (infra/checks/images.sh); nothing else should override them.
#   docker.io/library/golang:1.26.8-bookworm   index digest observed 2026-09-30
#   gcr.io/distroless/cc-debian12:nonroot      index digest observed 2026-10-08
ARG GO_IMAGE=docker.io/library/golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${GO_IMAGE} AS build
# sha256 of libonnxruntime.so.1 inside onnxruntime-node-1.24.1.tgz, whose own
# sha256 infra/scripts/fetch-onnxruntime.sh pins. Checked again here so that a
# stale or foreign file in the build context cannot slip in. Bump together
# with the script's VERSION.
ARG ORT_SHA256_AMD64=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
ARG ORT_SHA256_ARM64=7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab
ENV CGO_ENABLED=1 GOFLAGS=-mod=readonly GOTOOLCHAIN=local
WORKDIR /src

# libjpeg-turbo's TurboJPEG API (turbojpeg.h and libturbojpeg.a, Debian's
# libturbojpeg0-dev), which shared/preprocess links statically: the runtime
# image needs no extra library. The script installs it only when missing, so
# the offline checks' local base image, which has it, needs no network.
COPY .ci/apt.sh .ci/install-turbojpeg.sh /usr/local/bin/
RUN install-turbojpeg.sh

# Modules first: this layer is reused until go.mod/go.sum change.
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

# Only what the binary imports (go list -deps ./functions/cmd/functions).
COPY shared/ shared/
COPY functions/ functions/
# The training-request rules SubmitTraining shares with the trainer.
COPY trainer/config/ trainer/config/
RUN go build -trimpath -ldflags='-s -w' -o /out/functions ./functions/cmd/functions
# The batch prediction job's task (Cloud Run job, infra/terraform/batch.tf).
RUN go build -trimpath -ldflags='-s -w' -o /out/batch ./functions/cmd/batch

FROM ${RUNTIME_IMAGE}
ARG SOURCE_REVISION=unknown
COPY --from=build /out/onnxruntime/libonnxruntime.so.1 /opt/onnxruntime/lib/libonnxruntime.so.1
COPY --from=build /out/functions /usr/local/bin/functions
COPY --from=build /out/batch /usr/local/bin/batch
ENV ORT_LIB=/opt/onnxruntime/lib/libonnxruntime.so.1 \
    ORCHARD_SOURCE_REVISION=${SOURCE_REVISION} \
    PORT=8080
LABEL org.opencontainers.image.title="orchard-functions" \
      org.opencontainers.image.source="https://github.com/orchard-mlops/orchard" \
      org.opencontainers.image.revision="${SOURCE_REVISION}"
# distroless "nonroot" (uid/gid 65532), stated numerically so that runtimes
# enforcing runAsNonRoot can check it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/functions"]
