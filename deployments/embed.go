// Package deployments holds the runnable examples: sample jobs (the edge
// scenarios of the seed documents, each also a query test folder where it
// ships sample input) and the single-gateway, cluster, container, compose,
// systemd and Kubernetes setups with a Grafana dashboard (README.md; the
// tests in this package keep them in step with the gateway).
// Jobs are embedded so that `millstream demo` needs no files on disk.
package deployments

import "embed"

// Jobs holds deployments/jobs/*/job.yaml.
//
//go:embed jobs/*/job.yaml
var Jobs embed.FS
