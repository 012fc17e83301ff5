# syntax=docker/dockerfile:1
# gitopsd: a static binary on distroless, running as nonroot (65532), the
# uid deploy/deployment.yaml runs it as. Build: docker build -t gitopsd .

# The builder runs natively and cross-compiles for the target platform
# (docker buildx build --platform linux/amd64,linux/arm64 ...).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /gitopsd ./cmd/gitopsd

# No shell, no package manager, CA certificates for https git remotes.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /gitopsd /gitopsd
USER 65532:65532
ENTRYPOINT ["/gitopsd"]
