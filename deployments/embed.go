// Package deployments holds the runnable examples: sample jobs (the edge
// scenarios of the seed documents, each also a query test folder where it
// ships sample input) and, later, cluster, systemd and container setups.
// Jobs are embedded so that `millstream demo` needs no files on disk.
package deployments

import "embed"

// Jobs holds deployments/jobs/*/job.yaml.
//
//go:embed jobs/*/job.yaml
var Jobs embed.FS
