package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/millstream/millstream/cluster"
)

const clusterHelp = `cluster status [--admin URL] [--json]

Shows the cluster as one gateway sees it: its members, and for each
partition its owner and replicas (placement), the gateway serving it now,
its epoch and the replication lag of its replicas.`

func clusterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "status" {
		return fmt.Errorf("%w: cluster needs a subcommand: status", errUsage)
	}
	fs := newFlagSet("cluster status", stderr, clusterHelp)
	admin := fs.String("admin", "http://127.0.0.1:8080", "admin API of any gateway of the cluster")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	base := strings.TrimSuffix(*admin, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/cluster", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster status: %s: %s", resp.Status, strings.TrimSpace(string(body)))
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

func printClusterStatus(w io.Writer, st *cluster.Status) {
	fmt.Fprintf(w, "seen from %s; quorum %s, fenced %v, %d copies of each partition\n", st.Self, st.Quorum, st.Fenced, st.Replicas)
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
