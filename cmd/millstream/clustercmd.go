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

	"github.com/spf13/cobra"

	"github.com/millstream/millstream/cluster"
)

const clusterLong = `Shows the cluster as one gateway sees it and stops counting a gateway
gone for good.`

const statusLong = `Shows the cluster as one gateway sees it: its members, the gateways
counted for the majority, and for each partition its owner and replicas
(placement), the gateway serving it now, its epoch and the replication lag
of its replicas.`

const forgetLong = `Stops counting GATEWAY for the majority, on every gateway of the cluster.
Use it for a gateway that is gone for good (its machine lost): until then
it counts as down, and the cluster tolerates one failure less. A gateway
that is still a member is refused: stop it with SIGTERM, which hands its
partitions off and leaves. If the forgotten gateway comes back, it counts
again.`

func newClusterCmd() *cobra.Command {
	c := groupCmd("cluster", "Cluster members, partition owners and replicas; forget a lost gateway", clusterLong)
	admin := addAdminFlags(c.PersistentFlags(), "admin API of any live gateway of the cluster")

	status := &cobra.Command{
		Use:   "status",
		Short: "Members, partition owners, replicas, epochs, replication lag",
		Long:  statusLong,
		Args:  nArgs(0, "cluster status takes no arguments"),
	}
	out := addOutputFlag(status)
	// --json came before -o; kept for scripts, out of the help.
	asJSON := status.Flags().Bool("json", false, "same as -o json")
	_ = status.Flags().MarkHidden("json")
	status.RunE = func(c *cobra.Command, _ []string) error {
		if *asJSON {
			*out = outJSON
		}
		if err := checkOutput(*out); err != nil {
			return err
		}
		body, err := clusterCall(c.Context(), http.MethodGet, admin, "/v1/cluster", "cluster status")
		if err != nil {
			return err
		}
		return emit(c.OutOrStdout(), *out, body, func(w io.Writer) error {
			var st cluster.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("cluster status: the admin API's answer: %w", err)
			}
			printClusterStatus(w, &st)
			return nil
		})
	}

	forget := &cobra.Command{
		Use:   "forget GATEWAY",
		Short: "Stop counting a gateway gone for good for the majority",
		Long:  forgetLong,
		Args:  nArgs(1, "cluster forget needs one gateway name"),
		RunE: func(c *cobra.Command, args []string) error {
			return forgetGateway(c.Context(), admin, args[0], c.OutOrStdout())
		},
	}
	c.AddCommand(status, forget)
	return c
}

func forgetGateway(ctx context.Context, admin *adminFlags, name string, stdout io.Writer) error {
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
