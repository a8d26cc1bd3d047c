package admin

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/actors"
)

// readinessCheck is one condition of /readyz: check returns why the
// gateway is not ready, or "".
type readinessCheck struct {
	name  string
	check func() string
}

// AddReadiness adds a condition to /readyz (before Handler), named so
// that a caller can leave it out with ?exclude=NAME.
func (a *API) AddReadiness(name string, check func() string) {
	a.checks = append(a.checks, readinessCheck{name, check})
}

// Register adds a collector to /metrics (before Handler): the cluster
// node's counters, for one.
func (a *API) Register(c prometheus.Collector) error { return a.reg.Register(c) }

// readyz answers 200 "ready" when the gateway takes input and serves, and
// 503 with every reason it does not otherwise: closing, recovering its
// state, and each failing check (fenced from the cluster's majority, an
// input broker unreachable, the disk policy refusing input). ?exclude=NAME
// (repeatable) leaves a named check out, as Kubernetes' /readyz does.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	reasons := a.notReady(a.g.Status(), r.URL.Query()["exclude"])
	if len(reasons) > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s\n", strings.Join(reasons, "; "))
		return
	}
	fmt.Fprintln(w, "ready")
}

// notReady lists why the gateway is not ready (none: it is), leaving out
// the named checks in exclude; /readyz and the console's health show it.
func (a *API) notReady(st actors.GatewayStatus, exclude []string) []string {
	var reasons []string
	if st.Closing {
		reasons = append(reasons, "closing")
	} else if st.Recovering {
		reasons = append(reasons, "recovering state (replaying the ingest log)")
	}
	if why := st.DiskRefusal; why != "" && !slices.Contains(exclude, "disk") {
		reasons = append(reasons, "disk: refusing input: "+why)
	}
	for _, c := range a.checks {
		if slices.Contains(exclude, c.name) {
			continue
		}
		if why := c.check(); why != "" {
			reasons = append(reasons, c.name+": "+why)
		}
	}
	return reasons
}
