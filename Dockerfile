# linkbeat's container image: docs/deploy.md has the `docker run` line and
# the Kubernetes DaemonSet (deploy/kubernetes/).
#
# The builder runs `make build`, so the image holds the very static binary
# that `make build` makes on a host (CGO_ENABLED=0, -trimpath, the same
# ldflags); test/deploy checks that this stays so.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build

# Static binary: no libc, no shell. The image runs as uid 0 so that the
# capabilities the runtime grants (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN,
# CAP_NET_RAW) are effective; it needs no other privilege.
FROM gcr.io/distroless/static-debian12
COPY --from=build /src/bin/linkbeat /usr/bin/linkbeat
ENTRYPOINT ["/usr/bin/linkbeat"]
CMD ["run"]
