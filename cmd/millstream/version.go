package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Args:  nArgs(0, "version takes no arguments"),
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(c.OutOrStdout(), "millstream", buildVersion())
			return err
		},
	}
}

// buildVersion is the version the binary calls itself (the root's
// --version, a cluster member's version).
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return versionLine(bi)
}

// versionLine is "VERSION (commit REV, TIME, modified) GOVERSION", the
// parenthesis only when the build recorded its VCS state. VERSION is the
// -ldflags one when a release build set it (a deliberate choice wins),
// else the module version Go stamped in (v0.0.0-<time>-<rev> for a build
// from an untagged checkout), else "dev".
func versionLine(bi *debug.BuildInfo) string {
	v, goVersion := version, runtime.Version()
	if bi != nil {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
	}
	var vcs []string
	if bi != nil {
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			vcs = append(vcs, "commit "+rev[:min(len(rev), 7)])
		}
		if at != "" {
			vcs = append(vcs, at)
		}
		if modified == "true" {
			vcs = append(vcs, "modified")
		}
	}
	if len(vcs) == 0 {
		return v + " " + goVersion
	}
	return fmt.Sprintf("%s (%s) %s", v, strings.Join(vcs, ", "), goVersion)
}
