// Package e2e tests the health-check image where it runs: in a scratch container, as user 65532, on a
// read-only root filesystem, with every capability dropped and no shell. The images come from
// internal/imagebuild (the same code as cmd/build-image) and reach the Docker engine by `docker load`,
// so no registry is needed. The tests skip when no engine answers, and fail instead when
// REQUIRE_DOCKER=1 (as .ci/run sets it).
//
// The application in these containers is ./testserver: an HTTPS server that demands a client
// certificate, plus a plain HTTP port for the original tool's -statusPort flags.
package e2e
