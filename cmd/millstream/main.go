// Command millstream is the single Millstream binary. This file only
// dispatches subcommands; each lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `millstream: a stream processor for factory-floor IoT gateways

Usage:
  millstream demo           a gateway, simulated devices and a sample job: one command
  millstream gateway        run one gateway from a configuration file
  millstream simulate       simulated devices publishing to an MQTT broker
  millstream cluster status members, partition owners, replicas, epochs, replication lag
  millstream cluster forget stop counting a gateway gone for good for the majority
  millstream job            deploy, list, get, explain or remove jobs of a running gateway
  millstream device         list devices, show a twin, set desired properties
  millstream deadletters    what a running gateway refused, and why
  millstream query run      run a query over JSON-lines files (local testing)
  millstream query explain  print the plan of a query as text proto
  millstream query test     run query test folders and compare outputs
  millstream cert           make the cluster CA and gateway, admin and device certificates
  millstream token          make a bearer token for the admin API
  millstream passwd         make a line of the embedded broker's password file
  millstream version        print the version

Run 'millstream <command> <subcommand> -h' for the flags of a command.
`

// version is set at build time with -ldflags "-X main.version=...".
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

func runCtx(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "millstream:", err)
		return 2
	case errors.Is(err, errTestsFailed):
		return 1
	}
	fmt.Fprintln(stderr, "millstream:", err)
	return 1
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	case "gateway":
		return gatewayCmd(ctx, args[1:], stdout, stderr)
	case "simulate":
		return simulateCmd(ctx, args[1:], stdout, stderr)
	case "job":
		return jobCmd(ctx, args[1:], stdout, stderr)
	case "cluster":
		return clusterCmd(ctx, args[1:], stdout, stderr)
	case "deadletters":
		return deadLettersCmd(ctx, args[1:], stdout, stderr)
	case "device":
		return deviceCmd(ctx, args[1:], stdout, stderr)
	case "cert":
		return certCmd(ctx, args[1:], stdout, stderr)
	case "token":
		return tokenCmd(ctx, args[1:], stdout, stderr)
	case "passwd":
		return passwdCmd(ctx, args[1:], stdin, stdout, stderr)
	case "query":
		if len(args) < 2 {
			return fmt.Errorf("%w: query needs a subcommand: run, explain or test", errUsage)
		}
		switch args[1] {
		case "run":
			return queryRun(args[2:], stdout, stderr)
		case "explain":
			return queryExplain(args[2:], stdout, stderr)
		case "test":
			return queryTest(args[2:], stdout, stderr)
		}
		return fmt.Errorf("%w: unknown query subcommand %q (want run, explain or test)", errUsage, args[1])
	case "version", "--version":
		fmt.Fprintln(stdout, "millstream", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}
