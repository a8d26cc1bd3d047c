package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/operators/value"
)

// DevicesInput is the system input queries read device status events from:
// SELECT deviceId, status, lastSeen FROM Devices. A row is emitted when a
// device is first seen or returns ("online") and when it has been silent
// for Config.DeviceSilence ("offline").
const DevicesInput = config.SystemDevicesInput

// Devices are entities hosted by their partition actor rather than actors
// of their own: a mailbox hop per event would cost more than the whole
// query on the hot path, and the partition actor already serializes
// everything that touches them (A1). A device idle past
// Config.PassivateAfter is dropped from memory (its desired properties are
// kept), so memory follows active devices, not every device ever seen.

// MaxReportedBytes is the largest last payload a device keeps as its
// reported state; a larger one is counted (Device.ReportedBytes) but not
// kept, so the memory devices hold is bounded by their number.
const MaxReportedBytes = 8 << 10

// Device is a device's twin as the gateway knows it.
type Device struct {
	ID       string          `json:"deviceId"`
	Online   bool            `json:"online"`
	LastSeen time.Time       `json:"lastSeen"`
	Messages uint64          `json:"messages"`
	Reported json.RawMessage `json:"reported,omitempty"` // the last payload, if at most MaxReportedBytes
	// ReportedBytes is the size of a last payload too large to keep.
	ReportedBytes int             `json:"reportedBytes,omitempty"`
	Desired       json.RawMessage `json:"desired,omitempty"`
	// The IoT Hub twin (twin.go): reported properties the device patched
	// over $iothub/twin, and each side's version.
	TwinReported    json.RawMessage `json:"twinReported,omitempty"`
	ReportedVersion uint64          `json:"reportedVersion,omitempty"`
	DesiredVersion  uint64          `json:"desiredVersion,omitempty"`
}

type deviceState struct {
	lastSeen int64
	online   bool
	messages uint64
	reported []byte
	// reportedLen is the size of the last payload when it was too large
	// to keep (reported is nil then).
	reportedLen int
	// The twin's reported properties, patched by the device (twin.go).
	twinReported    []byte
	reportedVersion uint64
	seqs            map[string]uint64     // highest sequence number per job/input (duplicates)
	seqWin          map[string]*seqWindow // which numbers below it were seen, where some were not (seqwindow.go)
}

// devicesMsg gets one device (id), or lists a partition's devices in id
// order: at most limit (0: all) with ids after after.
type devicesMsg struct {
	id    string
	after string
	limit int
}

type devicesReply struct{ devices []Device }

// desiredMsg stores desired properties for a device.
type desiredMsg struct {
	id      string
	desired []byte
}

// seen records an event of a device and emits "online" when it is new or
// back from silence.
func (p *partition) seen(id string, payload []byte, now int64) {
	if id == "" {
		return
	}
	d := p.devices[id]
	if d == nil {
		d = &deviceState{}
		p.devices[id] = d
	}
	d.lastSeen, d.messages = now, d.messages+1
	// Kept for the twin's reported state only when small: 4,000 devices
	// that each sent one 200 KiB message held 800 MiB here (issue 13).
	if len(payload) <= MaxReportedBytes {
		d.reported, d.reportedLen = payload, 0
	} else {
		d.reported, d.reportedLen = nil, len(payload)
	}
	if !d.online {
		d.online = true
		p.deviceEvent(id, "online", now)
	}
}

// sweep marks silent devices offline and passivates idle ones.
func (p *partition) sweep(now int64) {
	silence := int64(p.g.cfg.DeviceSilence / 100)
	passivate := int64(p.g.cfg.PassivateAfter / 100)
	ids := make([]string, 0, len(p.devices))
	for id := range p.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids) // deterministic order of offline events
	for _, id := range ids {
		d := p.devices[id]
		if d.online && now-d.lastSeen >= silence {
			d.online = false
			p.deviceEvent(id, "offline", now)
		}
		if !d.online && now-d.lastSeen >= passivate {
			if d.twinReported != nil {
				// Its twin stays; the rest goes (once: a later sweep finds
				// only the twin left).
				if d.reported != nil || d.seqs != nil || d.seqWin != nil || d.messages != 0 {
					p.devices[id] = &deviceState{lastSeen: d.lastSeen, twinReported: d.twinReported, reportedVersion: d.reportedVersion}
				}
				continue
			}
			delete(p.devices, id)
		}
	}
}

func (p *partition) deviceEvent(id, status string, now int64) {
	d := p.devices[id]
	rec := &value.Record{
		Names: []string{"deviceId", "status", "lastSeen"},
		Vals:  []value.Value{value.Str(id), value.Str(status), value.Time(d.lastSeen)},
	}
	e := event{input: DevicesInput, device: id, rec: rec, arrival: now}
	for _, r := range p.order {
		if r.ex.Reads(DevicesInput) {
			p.queueIngest(r, e)
		}
	}
	p.forward(e)
}

func (p *partition) device(id string) Device {
	d := p.devices[id]
	out := Device{ID: id}
	if d != nil {
		out.Online, out.LastSeen, out.Messages = d.online, value.ToTime(d.lastSeen), d.messages
		if json.Valid(d.reported) {
			out.Reported = append(json.RawMessage(nil), d.reported...)
		}
		out.ReportedBytes = d.reportedLen
		if len(d.twinReported) > 0 {
			out.TwinReported = append(json.RawMessage(nil), d.twinReported...)
		}
		out.ReportedVersion = d.reportedVersion
	}
	if des, ok := p.desired[id]; ok {
		out.DesiredVersion = p.desiredVersion[id]
		out.Desired = append(json.RawMessage(nil), des...)
	}
	return out
}

// Devices lists the devices every partition knows (active or with desired
// properties), by id.
func (g *Gateway) Devices(ctx context.Context) ([]Device, error) {
	return g.DevicesPage(ctx, "", 0)
}

// DevicesPage returns up to limit devices (0: all) in id order, those
// with ids after after: a page of a listing too long for one answer.
func (g *Gateway) DevicesPage(ctx context.Context, after string, limit int) ([]Device, error) {
	var out []Device
	for _, pid := range g.parts {
		res, err := g.system.Root.RequestFuture(pid, &devicesMsg{after: after, limit: limit}, timeoutOf(ctx)).Result()
		if err != nil {
			return nil, fmt.Errorf("actors: partition %s: %w", pid.Id, err)
		}
		out = append(out, res.(*devicesReply).devices...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Device returns one device's twin.
func (g *Gateway) Device(ctx context.Context, id string) (Device, error) {
	res, err := g.system.Root.RequestFuture(g.parts[g.partitionOf(id)], &devicesMsg{id: id}, timeoutOf(ctx)).Result()
	if err != nil {
		return Device{}, err
	}
	devs := res.(*devicesReply).devices
	if len(devs) == 0 {
		return Device{}, fmt.Errorf("%w: %q", ErrUnknownDevice, id)
	}
	return devs[0], nil
}

// SetDesired stores a device's desired properties (a JSON object) and
// publishes them to devices/{id}/twin/desired through the gateway's
// publisher, as IoT Hub does for module twins.
func (g *Gateway) SetDesired(ctx context.Context, id string, desired []byte) error {
	if !json.Valid(desired) || len(desired) == 0 || desired[0] != '{' {
		return fmt.Errorf("%w: desired properties must be a JSON object", ErrBadRequest)
	}
	if err := checkDeviceID(id); err != nil {
		return err
	}
	res, err := g.system.Root.RequestFuture(g.parts[g.partitionOf(id)], &desiredMsg{id: id, desired: desired}, timeoutOf(ctx)).Result()
	if err != nil {
		return err
	}
	pub := g.publisher()
	if pub == nil {
		return nil
	}
	if n, ok := pub.(DesiredNotifier); ok {
		n.NotifyDesired(id, desired, res.(uint64))
	}
	return pub.Publish("devices/"+id+"/twin/desired", desired, 1)
}

// DesiredNotifier is a publisher that also tells a device of its new
// desired properties the IoT Hub way ($iothub/twin/PATCH/properties/
// desired/?$version=N, to that device's connection only).
type DesiredNotifier interface {
	NotifyDesired(id string, desired []byte, version uint64)
}
