# syntax=docker/dockerfile:1
# Multi-stage build: a static binary in a distroless image, running as a non-root user.
# Templates, static files and migrations are embedded, so the binary is all the image needs.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/server ./cmd/server && \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o /out/exampleapp ./cmd/exampleapp

# The example partner app (cmd/exampleapp), for examples/compose.yaml: docker build --target exampleapp .
FROM gcr.io/distroless/static-debian12:nonroot AS exampleapp
COPY --from=build /out/exampleapp /exampleapp
USER nonroot:nonroot
EXPOSE 8082
ENTRYPOINT ["/exampleapp"]
CMD ["-addr", ":8082"]

# The server: the default target (the last stage).
FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=build /out/server /server
USER nonroot:nonroot
ENV LISTEN_ADDR=:8080 LOG_FORMAT=json
EXPOSE 8080
# The image has no shell or curl: the binary probes itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["/server", "healthcheck"]
ENTRYPOINT ["/server"]
CMD ["serve"]
