// Package e2e tests the health-check image where it runs: in a scratch container, as user 65532, on a
// read-only root filesystem, with every capability dropped and no shell. The images come from
// internal/imagebuild (the same code as cmd/build-image) and reach the Docker engine by `docker load`;
// one test pushes the multi-arch image to a registry it serves on 127.0.0.1 and has the engine pull
// it and build the README's Dockerfile from it. The tests skip when no engine (or, for the registry,
// no skopeo) is there, and fail instead when REQUIRE_DOCKER=1 (as .ci/run sets it).
//
// The application in these containers is ./testserver: an HTTPS server that demands a client
// certificate, plus a plain HTTP port for the original tool's -statusPort flags.
package e2e
