// Command millstream is the single Millstream binary. This file builds the
// command tree (github.com/spf13/cobra) and maps errors to exit codes;
// each command lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

const rootLong = `millstream: a stream processor for factory-floor IoT gateways.

Flags may come before or after a command's arguments. Commands that call a
gateway's admin API take --admin as host:port or a URL (default
$MILLSTREAM_ADMIN, else 127.0.0.1:8080), and show tables by default or the
API's answer with -o json or -o yaml.

Exit codes:
  0  success
  1  failure: the command ran and something went wrong (including failed
     query tests)
  2  usage error: unknown command or flag, missing or extra arguments`

// version is set at build time with -ldflags "-X main.version=..."; see
// version.go for what the binary reports without it.
var version = "dev"

// stdin is where commands read secrets from (a variable for tests).
var stdin io.Reader = os.Stdin

// errUsage marks errors caused by the command line; exit code 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runCtx(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	return runCtx(context.Background(), args, stdout, stderr)
}

// runCtx runs one command line and returns its exit code: 0 ok, 1 failure,
// 2 usage error.
func runCtx(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd, err := execute(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errTestsFailed):
		// The report on stdout says what failed.
		return 1
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "millstream:", err)
		if cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return 2
	}
	fmt.Fprintln(stderr, "millstream:", err)
	return 1
}

// execute runs args through a fresh command tree (flags are bound to
// variables of one tree, so each run gets its own) and returns the command
// that ran or failed.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) (*cobra.Command, error) {
	root := newRootCmd(stdout, stderr)
	if args == nil {
		args = []string{} // nil makes cobra read os.Args
	}
	root.SetArgs(oneDashLongFlags(root, args))
	return root.ExecuteContextC(ctx)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "millstream",
		Short:   "A stream processor for factory-floor IoT gateways",
		Long:    rootLong,
		Version: buildVersion(),
		// Errors and usage hints are printed once, by runCtx, which also
		// picks the exit code.
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			return fmt.Errorf("%w: unknown command %q%s", errUsage, args[0], didYouMean(c, args[0]))
		},
		RunE: func(c *cobra.Command, _ []string) error {
			// A new user's first run: what it is, the commands, exit codes.
			fmt.Fprintf(c.ErrOrStderr(), "%s\n\n%s", c.Long, c.UsageString())
			return fmt.Errorf("%w: no command given", errUsage)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Commands that hold subcommands run only to report a usage error:
	// their help shows "millstream job [command]", not "millstream job".
	// Subcommands inherit the template.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	// Every bad flag, on any command, is a usage error (exit 2) naming it.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %s: %v", errUsage, c.CommandPath(), err)
	})
	root.AddGroup(
		&cobra.Group{ID: "run", Title: "Run:"},
		&cobra.Group{ID: "operate", Title: "Operate a running gateway (admin API):"},
		&cobra.Group{ID: "query", Title: "Develop queries:"},
		&cobra.Group{ID: "secure", Title: "Security:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("run", newDemoCmd(), newGatewayCmd(), newSimulateCmd())
	add("operate", newJobCmd(), newDeviceCmd(), newClusterCmd(), newDeadLettersCmd())
	add("query", newQueryCmd(), newImportCmd())
	add("secure", newCertCmd(), newTokenCmd(), newPasswdCmd())
	root.AddCommand(newVersionCmd())
	// Made here rather than on first Execute so that the tree is complete
	// for tests that walk it.
	root.SetHelpCommand(newHelpCmd(root))
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

// groupCmd is a command that only holds subcommands. Without one it is a
// usage error (cobra would print the help and exit 0), and so is an
// unknown one.
func groupCmd(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			var names []string
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			want := strings.Join(names, ", ")
			if len(args) == 0 {
				fmt.Fprint(c.ErrOrStderr(), c.UsageString())
				return fmt.Errorf("%w: %s needs a subcommand: %s", errUsage, c.Name(), want)
			}
			return fmt.Errorf("%w: unknown %s subcommand %q (want %s)%s", errUsage, c.Name(), args[0], want, didYouMean(c, args[0]))
		},
	}
}

func didYouMean(c *cobra.Command, typed string) string {
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	if s := c.SuggestionsFor(typed); len(s) > 0 {
		return fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
	}
	return ""
}

// nArgs accepts exactly n positional arguments; otherwise it is a usage
// error saying what is wanted.
func nArgs(n int, want string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n || (n > 0 && slices.Contains(args, "")) {
			return fmt.Errorf("%w: %s", errUsage, want)
		}
		return nil
	}
}

// oneDashLongFlags rewrites -name and -name=value to two dashes where name
// is a long flag of the command being run: the CLI was built on the
// standard flag package, which takes one dash, and scripts and service
// units written for it (gateway -config ...) keep working. Shorthands
// (-t, -o, -h) and arguments that name no flag are left alone.
func oneDashLongFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if name == "help" || cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil {
			out[i] = "-" + a
		}
	}
	return out
}

// newHelpCmd is cobra's help command, except that a topic that names no
// command is a usage error (exit 2), as an unknown command is.
func newHelpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help shows the help of any command: millstream help job deploy.",
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			for _, sub := range root.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				return fmt.Errorf("%w: unknown help topic %q%s", errUsage, strings.Join(args, " "), didYouMean(root, args[0]))
			}
			return cmd.Help()
		},
	}
}
