// Package monitoring checks manifests/monitoring against the operator: every expression of the
// alerts and the Grafana dashboard parses, names only series the operator exposes (read from
// the source of pkg/metrics, so a renamed metric or label fails here) with labels and values
// they have, and the alerts fire when they should and stay quiet when they should.
//
// It is a module of its own because the Prometheus module it needs would raise client-go in
// the operator's module. Run it with `make test-monitoring` (part of `make test`).
package monitoring
