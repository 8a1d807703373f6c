# syntax=docker/dockerfile:1
# The `enclave` binary in a small Debian image: `serve` (the default command) or `worker`.
#
#   docker build -t enclave:local .            (BuildKit; `docker compose build` does the same)
#
# Models are not in the image: mount the directory `scripts/fetch-models` fills at /models
# (read-only is enough), see docker-compose.yml. The binary is built for x86-64-v3
# (.cargo/config.toml): the host CPU needs AVX2/FMA.

# ---------------------------------------------------------------- build
FROM rust:1.95-bookworm AS builder
# llama-cpp-sys-2 builds llama.cpp with cmake and generates its bindings with bindgen (libclang).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target directory live in BuildKit cache mounts, so a rebuild after a source
# change is incremental. The cache mount is not part of the image: copy the binary out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin enclave \
 && install -D -m 0755 target/release/enclave /out/enclave

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim
# libgomp1: llama.cpp's OpenMP threads. ONNX Runtime is loaded at run time from /models
# (ORT_DYLIB_PATH); it needs only glibc and libstdc++, both already here. tesseract-ocr (with
# its English pack; add tesseract-ocr-LANG for ocr.languages) reads scans and images;
# poppler-utils renders scanned pages for it and recovers damaged PDFs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
      tesseract-ocr tesseract-ocr-eng poppler-utils \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid, so that volumes and bind mounts can be owned by it on the host. The data dir and
# its uploads/ are created here, owned by that user: a named volume mounted on either starts as
# a copy of them (ownership included).
RUN groupadd --system --gid 10001 enclave \
 && useradd --system --uid 10001 --gid enclave --home-dir /var/lib/enclave --no-create-home \
      --shell /usr/sbin/nologin enclave \
 && mkdir -p /var/lib/enclave/uploads /models \
 && chown -R enclave:enclave /var/lib/enclave
COPY --from=builder /out/enclave /usr/local/bin/enclave
ENV ENCLAVE_DATA_DIR=/var/lib/enclave \
    ENCLAVE_MODELS_DIR=/models \
    ORT_DYLIB_PATH=/models/onnxruntime/libonnxruntime.so \
    HF_HUB_OFFLINE=1
VOLUME /var/lib/enclave
WORKDIR /var/lib/enclave
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK: the image has no curl. GET /healthz (liveness) and /readyz (models loaded,
# stores answering) are there for the orchestrator; docker-compose.yml probes /readyz itself.
ENTRYPOINT ["enclave"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
