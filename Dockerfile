# syntax=docker/dockerfile:1
# Build stage: the same locked release build as `make release`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests/streamer-sim/Cargo.toml ./tests/streamer-sim/Cargo.toml
COPY tests/streamer-sim/src ./tests/streamer-sim/src
RUN cargo build --locked --release --bin panoptes

# Runtime stage: distroless, no shell, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/panoptes /usr/local/bin/panoptes
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/panoptes"]
CMD ["run"]
