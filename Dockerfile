# The operator's image: one static binary (the controller and the archive agent) on an empty base,
# running as a non-root user. Build with: docker build -t backup-operator:latest .
# The local node's image (make image) is built from the same binary and layout without an engine.
FROM golang:1.26 AS build
# libzstd's header and static library: the agent compresses with it through cgo.
RUN apt-get update && apt-get install -y --no-install-recommends libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY Makefile ./
COPY hack/build-deps.sh hack/
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
RUN make build VERSION=${VERSION} BINARY=/out/backup-controller \
 && mkdir -p /out/etc /out/tmp \
 && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /out/etc/passwd \
 && echo 'nonroot:x:65532:' > /out/etc/group

FROM scratch
COPY --from=build /out/etc/ /etc/
COPY --from=build --chmod=1777 /out/tmp /tmp
COPY --from=build /out/backup-controller /backup-controller
USER 65532:65532
ENTRYPOINT ["/backup-controller"]
