package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/millstream/millstream/operators/exec"
	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/querytest"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

var errTestsFailed = errors.New("query tests failed")

// multiFlag collects repeated flags.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func newFlagSet(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: millstream %s\n\n%s\nFlags:\n", name, help)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// loadPlan reads a query (.sql) or a plan (.textproto/.txtpb/.pbtxt as
// text proto, .json as protojson).
func loadPlan(path string) (*pb.Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".textproto", ".txtpb", ".pbtxt":
		p := &pb.Plan{}
		if err := prototext.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return p, nil
	case ".json":
		p := &pb.Plan{}
		if err := protojson.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return p, nil
	}
	p, err := plan.FromSQL(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

type policyFlags struct {
	late, ooo    time.Duration
	policy       string
	compat       string
	lowerCase    bool
	arrivalField string
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&p.late, "late-arrival-tolerance", exec.DefaultLateArrival, "late-arrival tolerance")
	fs.DurationVar(&p.ooo, "out-of-order-tolerance", 0, "out-of-order tolerance")
	fs.StringVar(&p.policy, "out-of-order-policy", "adjust", "what happens to late and out-of-order events: adjust or drop")
	fs.StringVar(&p.compat, "compat-level", "1.2", "compatibility level: 1.0, 1.1 or 1.2")
	fs.BoolVar(&p.lowerCase, "lower-case-names", false, "lower-case output field names, as Stream Analytics on IoT Edge does")
	fs.StringVar(&p.arrivalField, "arrival-time-field", "", "field holding each event's arrival time; events are then fed in file order")
}

func (p *policyFlags) options() (exec.Options, error) {
	pol, err := exec.ParsePolicy(p.policy)
	if err != nil {
		return exec.Options{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	late := p.late
	if late == 0 {
		late = -1
	}
	switch p.compat {
	case "1.0", "1.1", "1.2":
	default:
		return exec.Options{}, fmt.Errorf("%w: --compat-level must be 1.0, 1.1 or 1.2", errUsage)
	}
	return exec.Options{LateArrivalTolerance: late, OutOfOrderTolerance: p.ooo, OutOfOrderPolicy: pol, CompatLevel: p.compat, LowerCaseNames: p.lowerCase}, nil
}

const runHelp = `query run --query q.sql --input [Name=]file.jsonl [--input ...] [--out DIR]

Runs a query over JSON-lines files, like Stream Analytics' local testing.
Events with TIMESTAMP BY are fed in event-time order; all windows are
flushed at the end of input. Each output is written to DIR/<output>.jsonl,
or to standard output when the query has one output and --out is not given.
Rejected events go to DIR/_deadletter.jsonl (or standard error) with the
reason. --query also takes a plan written as text proto (.textproto) or
JSON (.json).`

func queryRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("query run", stderr, runHelp)
	var queryPath, outDir string
	var inputs, refs multiFlag
	var pf policyFlags
	fs.StringVar(&queryPath, "query", "", "query file (.sql) or plan (.textproto, .json)")
	fs.Var(&inputs, "input", "input as Name=file.jsonl (Name may be left out when the query has one input); repeatable")
	fs.Var(&refs, "reference", "reference data as Name=file.json (a JSON array or JSON lines); repeatable")
	fs.StringVar(&outDir, "out", "", "directory for <output>.jsonl files")
	pf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if queryPath == "" {
		return fmt.Errorf("%w: --query is required", errUsage)
	}
	if len(inputs) == 0 {
		return fmt.Errorf("%w: at least one --input is required", errUsage)
	}
	p, err := loadPlan(queryPath)
	if err != nil {
		return err
	}
	opts, err := pf.options()
	if err != nil {
		return err
	}
	var files []querytest.InputFile
	for _, in := range inputs {
		name, file, ok := strings.Cut(in, "=")
		if !ok {
			name, file = "", in
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--input %s: %w", in, err)
		}
		files = append(files, querytest.InputFile{Name: name, Data: data, ArrivalField: pf.arrivalField})
	}
	for _, ref := range refs {
		name, file, ok := strings.Cut(ref, "=")
		if !ok || name == "" {
			return fmt.Errorf("%w: --reference takes Name=file.json", errUsage)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--reference %s: %w", ref, err)
		}
		files = append(files, querytest.InputFile{Name: name, Data: data, Reference: true})
	}
	outs := map[string]bool{}
	for _, o := range p.Outputs {
		outs[o.Name] = true
	}
	if outDir == "" && len(outs) > 1 {
		return fmt.Errorf("%w: the query writes %d outputs; give --out DIR", errUsage, len(outs))
	}
	res, err := querytest.RunFiles(p, files, opts)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(outs))
	for n := range outs {
		names = append(names, n)
	}
	sort.Strings(names)
	if outDir == "" {
		w := bufio.NewWriter(stdout)
		writeRows(w, res.Outputs[strings.ToLower(names[0])])
		if err := w.Flush(); err != nil {
			return err
		}
		writeDeadLetters(stderr, res.DeadLetters)
	} else {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return err
		}
		for _, n := range names {
			if err := writeFile(filepath.Join(outDir, n+".jsonl"), func(w io.Writer) { writeRows(w, res.Outputs[strings.ToLower(n)]) }); err != nil {
				return err
			}
		}
		if len(res.DeadLetters) > 0 {
			if err := writeFile(filepath.Join(outDir, "_deadletter.jsonl"), func(w io.Writer) { writeDeadLetters(w, res.DeadLetters) }); err != nil {
				return err
			}
		}
	}
	c := res.Counters
	fmt.Fprintf(stderr, "millstream: %d events in, %d rows out, %d dead-lettered, %d late adjusted, %d late dropped, %d out-of-order adjusted, %d out-of-order dropped, %d early dropped\n",
		c.EventsIn, c.EventsOut, c.DeadLettered, c.LateAdjusted, c.LateDropped, c.OutOfOrderAdjusted, c.OutOfOrderDropped, c.EarlyDropped)
	return nil
}

func writeFile(path string, fill func(io.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fill(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeRows(w io.Writer, rows []*value.Record) {
	var buf []byte
	for _, r := range rows {
		buf = value.AppendRecordJSON(buf[:0], r)
		buf = append(buf, '\n')
		w.Write(buf)
	}
}

func writeDeadLetters(w io.Writer, dls []exec.DeadLetter) {
	var buf []byte
	for _, dl := range dls {
		rec := &value.Record{}
		rec.Set("input", value.Str(dl.Input))
		if dl.Stage != "" {
			rec.Set("stage", value.Str(dl.Stage))
		}
		rec.Set("reason", value.Str(dl.Reason))
		rec.Set("payload", value.Str(string(dl.Payload)))
		buf = value.AppendRecordJSON(buf[:0], rec)
		buf = append(buf, '\n')
		w.Write(buf)
	}
}

const explainHelp = `query explain FILE

Prints the plan of a query (.sql) as text proto. The printed plan can be
edited and run with 'millstream query run --query plan.textproto'.`

func queryExplain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("query explain", stderr, explainHelp)
	asJSON := fs.Bool("json", false, "print protojson instead of text proto")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: query explain takes one query file", errUsage)
	}
	p, err := loadPlan(fs.Arg(0))
	if err != nil {
		return err
	}
	var out []byte
	if *asJSON {
		out, err = protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(p)
	} else {
		out, err = prototext.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(p)
	}
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

const testHelp = `query test DIR...

Runs query test folders and reports PASS or FAIL for each, with the rows
that differ. A folder holds query.sql, input.jsonl (or input-<Alias>.jsonl
per input), expected.jsonl (or expected-<Output>.jsonl per output) and an
optional case.json with options and comparison rules. A directory without
query.sql is searched for test folders one level down.`

func queryTest(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("query test", stderr, testHelp)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: query test needs at least one folder", errUsage)
	}
	var dirs []string
	for _, d := range fs.Args() {
		if _, err := os.Stat(filepath.Join(d, "query.sql")); err == nil {
			dirs = append(dirs, d)
			continue
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(d, e.Name(), "query.sql")); e.IsDir() && err == nil {
				dirs = append(dirs, filepath.Join(d, e.Name()))
			}
		}
	}
	if len(dirs) == 0 {
		return fmt.Errorf("%w: no folder with a query.sql in %s", errUsage, strings.Join(fs.Args(), ", "))
	}
	passed, failed := 0, 0
	for _, d := range dirs {
		c, err := querytest.Load(d)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s\n  error: %v\n", filepath.Base(d), err)
			failed++
			continue
		}
		rep := c.Check()
		fmt.Fprint(stdout, rep)
		if rep.Passed() {
			passed++
		} else {
			failed++
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return errTestsFailed
	}
	return nil
}
