package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/millstream/millstream/actors"
)

const deviceLong = `Shows the devices a running gateway knows (online state, last seen, the
last reported message, desired properties) and sets desired properties,
which the gateway publishes to devices/{id}/twin/desired.`

func newDeviceCmd() *cobra.Command {
	c := groupCmd("device", "List devices, show a device's twin, set desired properties", deviceLong)
	af := addAdminFlags(c.PersistentFlags(), "admin API of the gateway")

	list := &cobra.Command{
		Use:   "list",
		Short: "List devices in id order, a page at a time (--all: every one)",
		Args:  nArgs(0, "device list takes no arguments"),
	}
	listOut := addOutputFlag(list)
	limit := list.Flags().Int("limit", 500, "devices per page (at most 5000)")
	after := list.Flags().String("after", "", "start after this device id (the next page)")
	all := list.Flags().Bool("all", false, "every device, page by page")
	list.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*listOut); err != nil {
			return err
		}
		if *limit < 1 || *limit > 5000 {
			return fmt.Errorf("%w: --limit must be from 1 to 5000", errUsage)
		}
		return listDevices(c, af, *listOut, *limit, *after, *all)
	}

	get := showCmd(&cobra.Command{
		Use:   "get ID",
		Short: "Show a device: online, last seen, messages, last reported payload, desired properties",
		Args:  nArgs(1, "device get takes one device id"),
	}, af, func(args []string) string { return "/v1/devices/" + url.PathEscape(args[0]) }, printDevice)

	setDesired := &cobra.Command{
		Use:   "set-desired ID JSON",
		Short: `Set a device's desired properties (a JSON object, e.g. '{"interval":5}')`,
		Args:  nArgs(2, "device set-desired takes a device id and a JSON object"),
	}
	desiredOut := addOutputFlag(setDesired)
	setDesired.RunE = func(c *cobra.Command, args []string) error {
		return sendAndReport(c, af, *desiredOut, http.MethodPut, "/v1/devices/"+url.PathEscape(args[0])+"/desired", []byte(args[1]),
			"desired", "desired properties of device %s set")
	}
	c.AddCommand(list, get, setDesired)
	return c
}

// devicesPage is GET /v1/devices (actors/admin/admin.go listDevices).
type devicesPage struct {
	Devices []actors.Device `json:"devices"`
	Next    string          `json:"next,omitempty"`
}

// listDevices prints one page, or with all every page; -o json of one
// page is the API's answer, of all pages one answer holding them all.
func listDevices(c *cobra.Command, af *adminFlags, format string, limit int, after string, all bool) error {
	ac, err := af.conn()
	if err != nil {
		return err
	}
	var got devicesPage
	var body []byte
	for {
		path := fmt.Sprintf("/v1/devices?limit=%d", limit)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		if body, err = ac.get(c.Context(), path); err != nil {
			return err
		}
		var page devicesPage
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("device list: the admin API's answer: %w", err)
		}
		got.Devices = append(got.Devices, page.Devices...)
		got.Next = page.Next
		if !all || page.Next == "" {
			break
		}
		after = page.Next
	}
	if all {
		if body, err = json.Marshal(got); err != nil {
			return fmt.Errorf("device list: %w", err)
		}
	}
	return emit(c.OutOrStdout(), format, body, func(w io.Writer) error {
		if len(got.Devices) == 0 {
			_, err := fmt.Fprintln(w, "no devices seen yet")
			return err
		}
		rows := make([]string, len(got.Devices))
		for i, d := range got.Devices {
			rows[i] = fmt.Sprintf("%s\t%s\t%s\t%d\t%s", d.ID, onlineWord(d.Online), ago(d.LastSeen), d.Messages, orDash(string(d.Desired)))
		}
		if err := table(w, "DEVICE\tSTATE\tLAST SEEN\tMESSAGES\tDESIRED", rows); err != nil {
			return err
		}
		if got.Next != "" {
			// On stderr: the table on stdout stays whole for a pipe.
			fmt.Fprintf(c.ErrOrStderr(), "more devices after %s: --all, or --after %s for the next page\n", got.Next, got.Next)
		}
		return nil
	})
}

func printDevice(w io.Writer, body []byte) error {
	var d actors.Device
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("device get: the admin API's answer: %w", err)
	}
	reported := orDash(string(d.Reported))
	if d.ReportedBytes > 0 {
		reported = fmt.Sprintf("(last payload of %d bytes, over %d: not kept)", d.ReportedBytes, actors.MaxReportedBytes)
	}
	return fields(w, []string{
		"device:\t" + d.ID,
		"state:\t" + onlineWord(d.Online),
		fmt.Sprintf("last seen:\t%s (%s)", d.LastSeen.Format(time.RFC3339), ago(d.LastSeen)),
		fmt.Sprintf("messages:\t%d", d.Messages),
		"reported:\t" + reported,
		"desired:\t" + orDash(string(d.Desired)),
	})
}

func onlineWord(online bool) string {
	if online {
		return "online"
	}
	return "offline"
}

// ago is how long before now t was, to the second ("never" for zero).
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func orDash(s string) string {
	if s == "" || s == "null" {
		return "-"
	}
	return s
}
