package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// Output formats of -o: text is for people (tables, key: value lines);
// json is the admin API's answer as it came; yaml is the same converted.
const (
	outText = "text"
	outJSON = "json"
	outYAML = "yaml"
)

// addOutputFlag adds -o/--output to a command that shows what the admin
// API answers.
func addOutputFlag(c *cobra.Command) *string {
	o := c.Flags().StringP("output", "o", outText, "output format: text, json (the admin API's answer) or yaml")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outText, outJSON, outYAML}, cobra.ShellCompDirectiveNoFileComp))
	return o
}

func checkOutput(format string) error {
	switch format {
	case outText, outJSON, outYAML:
		return nil
	}
	return fmt.Errorf("%w: -o %q: want text, json or yaml", errUsage, format)
}

// emit writes body, a JSON document, in format; text calls human.
func emit(w io.Writer, format string, body []byte, human func(io.Writer) error) error {
	switch format {
	case outJSON:
		body = bytes.TrimRight(body, "\n")
		_, err := fmt.Fprintf(w, "%s\n", body)
		return err
	case outYAML:
		y, err := jsonToYAML(body)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	return human(w)
}

// jsonToYAML converts a JSON document to block-style YAML. JSON is YAML,
// so it is parsed as a node tree, which keeps the API's key order and its
// numbers as written (no float64 round trip); only the flow style and the
// quotes of JSON are dropped, the encoder quoting what needs it.
func jsonToYAML(body []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("converting the answer to YAML: %w", err)
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("converting the answer to YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("converting the answer to YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// table writes aligned columns; rows are tab-separated.
func table(w io.Writer, header string, rows []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	return tw.Flush()
}

// fields writes "name:\tvalue" rows with the values aligned.
func fields(w io.Writer, rows []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	return tw.Flush()
}

// humanBytes is n in B, KiB, MiB or GiB, for sizes people read.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + suffix
}
