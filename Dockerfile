# linkbeat needs the host's network namespace and BPF: run with
#   --privileged --network host --pid host -v /sys/fs/bpf:/sys/fs/bpf
# (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN instead of --privileged).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build

FROM gcr.io/distroless/static-debian12
COPY --from=build /src/bin/linkbeat /usr/bin/linkbeat
ENTRYPOINT ["/usr/bin/linkbeat"]
CMD ["run"]
