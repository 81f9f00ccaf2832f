# Multi-stage: build a static binary, run it as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces miniredis with the patched copy kept in the tree
# (third_party/miniredis/README.md), so it must be here to download.
COPY third_party/ third_party/
RUN go mod download
COPY . .
# VERSION names the build in `occase version`, the startup log line and
# occase_build_info (docker build --build-arg VERSION=$(git describe)); left
# empty, the module version and VCS revision Go records are used.
ARG VERSION=""
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags="-s -w -X main.version=${VERSION}" -o /out/occase .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/occase /occase
# Images are stored here in roles img and all; mount a volume in production.
WORKDIR /data
# Numeric, so that Kubernetes' runAsNonRoot can verify it (a user name makes
# the kubelet refuse the container: "image has non-numeric user").
USER 65532:65532
EXPOSE 8080
ENV OCCASE_ADDR=:8080 OCCASE_LOG_FORMAT=json OCCASE_IMAGE_DIR=/data/images
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/occase", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/occase"]
CMD ["serve", "--role=all"]
