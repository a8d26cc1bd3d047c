// Package admin is a gateway's HTTP API: the routes operators, the CLI
// (cmd/millstream job, device, deadletters, cluster) and probes call, who
// may call what, readiness, the Prometheus exposition of /metrics, and
// the web console served beside them (its files are internal/console's;
// its live stream, stream.go, is this package's and reads the same
// Gateway interface).
//
// What it owns:
//
//   - Routes (API, admin.go): /v1/jobs, /v1/devices, /v1/outputs,
//     /v1/deadletters (deadletters.go), /v1/state, /v1/cluster, /metrics,
//     /healthz, /readyz (readyz.go) and, with Security.Pprof,
//     /debug/pprof. Their paths, status codes, JSON shapes and headers are
//     an interface: the CLI, the deployment manifests' probes
//     (deployments/manifests_test.go) and dashboards depend on them.
//   - The console's live stream (stream.go, snapshot.go): GET
//     /v1/console/stream, Server-Sent Events carrying a snapshot of the
//     gateway every second (its counters, health, cluster, jobs, the
//     first devices, outputs), at most MaxConsoleStreams at once, ended
//     by CloseStreams when the server shuts down.
//   - Who may call what (Security, guard; security.go): the Host and
//     Origin checks, bearer tokens (the tokens file, read again when it
//     changes) and client certificates, the read and operate roles, the
//     body types a change may carry, the TLS configuration of an HTTPS API
//     (ServerTLS), and the count of refusals
//     (millstream_admin_refused_total).
//   - Readiness (readyz.go): the gateway's own reasons (closing,
//     recovering, the disk guard) and the checks the caller adds
//     (AddReadiness: the cluster's quorum, input brokers).
//   - Metrics exposition (metrics.go): one registry per API holding the Go
//     and process collectors, the per-job, output, broker and durable
//     counters read at scrape time (gatewayCollector), the build's
//     identity, the runtime's own collectors (actors.Gateway.Collectors)
//     and those the caller registers (Register, SetDeadLetters).
//
// What it does not own: the runtime. Jobs are deployed, devices tracked,
// outputs configured and dead letters kept by package actors; this package
// only calls them, through the Gateway and Outputs interfaces
// (gateway.go), which *actors.Gateway and *actors.Outputs implement. The
// embedded broker and the dead letters are used as their concrete actors
// types (optional, nil for none). It starts no listener and no goroutine:
// the caller serves Handler with its own http.Server (ServerErrorLog,
// ServerTLS, and CloseStreams registered with RegisterOnShutdown), and
// the cluster is reached through Cluster, which cluster.Node implements,
// so this package imports no cluster code.
//
// Invariants:
//
//	H1: every request but /healthz and /readyz passes the guard first
//	    (Host, Origin, authentication, role, body type), so a route added
//	    to Handler is protected without saying so.
//	H2: /healthz and /readyz answer without credentials and never block
//	    on a partition: readiness reads Gateway.Status, a snapshot.
//	H3: job definitions leave the API with their HTTP output header values
//	    redacted (actors.RedactHeaders).
//	H4: the only requests served without credentials when authentication
//	    is on are /healthz, /readyz and the console's own files
//	    (console.IsFile: fixed bytes compiled into the binary, no data);
//	    the console's data comes from the API and its live stream, which
//	    need them like any other route, and a stream checks them again
//	    before every frame.
//	H5: a live stream holds no more than one snapshot and one frame; all
//	    streams share one snapshot a second, built under a deadline.
//
// Concurrency: configure an API (SetCluster, SetDeadLetters, AddReadiness,
// Register, Secure) from one goroutine before calling Handler; the handler
// is then safe for concurrent use, as are the Gateway and Outputs
// implementations it calls.
package admin
