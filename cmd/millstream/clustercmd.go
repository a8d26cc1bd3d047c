package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/millstream/millstream/cluster"
)

const clusterHelp = `cluster status [--admin URL] [--json]

Shows the cluster as one gateway sees it: its members, the gateways
counted for the majority, and for each partition its owner and replicas
(placement), the gateway serving it now, its epoch and the replication lag
of its replicas.`

const forgetHelp = `cluster forget GATEWAY [--admin URL]

Stops counting GATEWAY for the majority, on every gateway of the cluster.
Use it for a gateway that is gone for good (its machine lost): until then
it counts as down, and the cluster tolerates one failure less. A gateway
that is still a member is refused: stop it with SIGTERM, which hands its
partitions off and leaves. If the forgotten gateway comes back, it counts
again.`

func clusterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "forget" {
		return forgetCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "status" {
		return fmt.Errorf("%w: cluster needs a subcommand: status or forget", errUsage)
	}
	fs := newFlagSet("cluster status", stderr, clusterHelp)
	admin := addAdminFlags(fs, "admin API of any gateway of the cluster")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	body, err := clusterCall(ctx, http.MethodGet, admin, "/v1/cluster", "cluster status")
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st cluster.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	printClusterStatus(stdout, &st)
	return nil
}

func forgetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cluster forget", stderr, forgetHelp)
	admin := addAdminFlags(fs, "admin API of any live gateway of the cluster")
	// The gateway's name comes before or after the flags.
	var rest []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		rest, args = args[:1], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest = append(rest, fs.Args()...)
	if len(rest) != 1 || rest[0] == "" {
		return fmt.Errorf("%w: cluster forget needs one gateway name", errUsage)
	}
	name := rest[0]
	body, err := clusterCall(ctx, http.MethodPost, admin, "/v1/cluster/forget/"+url.PathEscape(name), "cluster forget "+name)
	if err != nil {
		return err
	}
	var r struct {
		WasCounted bool `json:"wasCounted"`
	}
	_ = json.Unmarshal(body, &r)
	if r.WasCounted {
		fmt.Fprintf(stdout, "%s forgotten: it no longer counts for the majority\n", name)
	} else {
		fmt.Fprintf(stdout, "%s was not counted by this gateway; the others were told to forget it too\n", name)
	}
	return nil
}

// clusterCall sends one request to the admin API at admin and returns the
// answer's body (adminBody), its errors prefixed with what.
func clusterCall(ctx context.Context, method string, af *adminFlags, path, what string) ([]byte, error) {
	ac, err := af.conn()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, ac.base+path, nil)
	if err != nil {
		return nil, err
	}
	body, err := ac.body(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return body, nil
}

func printClusterStatus(w io.Writer, st *cluster.Status) {
	fmt.Fprintf(w, "seen from %s; quorum %s, fenced %v, %d copies of each partition\n", st.Self, st.Quorum, st.Fenced, st.Replicas)
	fmt.Fprintf(w, "counted for the majority: %s\n", strings.Join(st.Known, ", "))
	fmt.Fprintf(w, "take-overs %d, hand-offs %d, forwarded events %d, refused forwards %d, parked events %d (%d waiting)\n\n",
		st.Counters.Failovers, st.Counters.HandOffs, st.Counters.Forwarded, st.Counters.RefusedForwards,
		st.Counters.Parked, st.Counters.ParkedWaiting)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tSERVING\tHEARD\tGOSSIP\tREMOTE\tHTTP\tVERSION")
	for _, m := range st.Members {
		heard := "never"
		if m.LastHeardMs >= 0 {
			heard = (time.Duration(m.LastHeardMs) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.State, m.Serving, heard, m.Gossip, m.Remote, m.HTTP, m.Version)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tREPLICAS\tSERVER\tEPOCH\tREPLICA LAG")
	for _, p := range st.Partitions {
		server := p.Server
		if server == "" {
			server = "(none)"
		}
		epoch, lag := "-", "-"
		if p.Epoch > 0 {
			epoch = fmt.Sprint(p.Epoch)
		}
		if len(p.ReplicaLag) > 0 {
			var parts []string
			for m, l := range p.ReplicaLag {
				parts = append(parts, fmt.Sprintf("%s=%d", m, l))
			}
			sort.Strings(parts)
			lag = strings.Join(parts, " ")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", p.Partition, p.Owner, strings.Join(p.Replicas, ","), server, epoch, lag)
	}
	tw.Flush()
}
