package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/millstream/millstream/actors"
)

const deviceLong = `Shows the devices a running gateway knows (online state, last seen, the
last reported message, desired properties), sets desired properties,
which the gateway publishes to devices/{id}/twin/desired, and invokes
direct methods on devices connected to its embedded broker (IoT Hub's
$iothub/methods topics).`

func newDeviceCmd() *cobra.Command {
	c := groupCmd("device", "List devices, show a device's twin, set desired properties, invoke direct methods", deviceLong)
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
		Short: "Show a device: online, last seen, messages, last payload, its twin (desired and reported properties)",
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
	invoke := &cobra.Command{
		Use:   "invoke ID METHOD [JSON]",
		Short: `Invoke a direct method on a device and print its answer (e.g. invoke press-1 reboot '{"delay":5}')`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 || len(args) > 3 || slices.Contains(args[:2], "") {
				return fmt.Errorf("%w: device invoke takes a device id, a method name and an optional JSON payload", errUsage)
			}
			return nil
		},
	}
	invokeOut := addOutputFlag(invoke)
	timeout := invoke.Flags().Duration("timeout", actors.DefaultMethodTimeout, "how long to wait for the device's answer (at most 5m)")
	invoke.RunE = func(c *cobra.Command, args []string) error {
		if *timeout <= 0 || *timeout > actors.MaxMethodTimeout {
			return fmt.Errorf("%w: --timeout must be above 0 and at most %v", errUsage, actors.MaxMethodTimeout)
		}
		if err := checkOutput(*invokeOut); err != nil {
			return err
		}
		var body []byte
		if len(args) == 3 {
			body = []byte(args[2])
		}
		return invokeMethod(c, af, *invokeOut, args[0], args[1], body, *timeout)
	}
	c.AddCommand(list, get, setDesired, invoke)
	return c
}

// invokeMethod calls POST /v1/devices/{id}/methods/{method} and prints
// the device's status and payload.
func invokeMethod(c *cobra.Command, af *adminFlags, format, id, method string, payload []byte, timeout time.Duration) error {
	ac, err := af.conn()
	if err != nil {
		return err
	}
	ac.client.Timeout = timeout + 15*time.Second // the gateway answers a timeout itself
	path := "/v1/devices/" + url.PathEscape(id) + "/methods/" + url.PathEscape(method) + "?timeout=" + url.QueryEscape(timeout.String())
	req, err := http.NewRequestWithContext(c.Context(), http.MethodPost, ac.base+path, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("admin API request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	answer, err := ac.body(req)
	if err != nil {
		return err
	}
	return emit(c.OutOrStdout(), format, answer, func(w io.Writer) error {
		var res actors.MethodResult
		if err := json.Unmarshal(answer, &res); err != nil {
			return fmt.Errorf("device invoke: the admin API's answer: %w", err)
		}
		return fields(w, []string{fmt.Sprintf("status:\t%d", res.Status), "payload:\t" + orDash(string(res.Payload))})
	})
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
		fmt.Sprintf("messages:\t%d (%d bytes, %d resends dropped)", d.Messages, d.Bytes, d.Duplicates),
		"reported:\t" + reported,
		"desired:\t" + withVersion(string(d.Desired), d.DesiredVersion),
		"twin reported:\t" + withVersion(string(d.TwinReported), d.ReportedVersion),
	})
}

// withVersion is a twin side with its version, or "-".
func withVersion(doc string, version uint64) string {
	if version == 0 {
		return orDash(doc)
	}
	return fmt.Sprintf("%s (version %d)", orDash(doc), version)
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
