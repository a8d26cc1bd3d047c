// Command millstream is the single Millstream binary. This file only
// dispatches subcommands; each lives in its own file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `millstream: a stream processor for factory-floor IoT gateways

Usage:
  millstream query run      run a query over JSON-lines files (local testing)
  millstream query explain  print the plan of a query as text proto
  millstream query test     run query test folders and compare outputs
  millstream version        print the version

Run 'millstream <command> <subcommand> -h' for the flags of a command.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks errors caused by the command line; exit code 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
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

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
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
