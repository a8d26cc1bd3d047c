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

// Each device has an actor (deviceactor.go) that owns its control
// plane; its partition keeps only what orders the data (deviceEntry).

// MaxReportedBytes is the largest last payload a device keeps as its
// reported state; a larger one is counted (Device.ReportedBytes) but not
// kept, so the memory devices hold is bounded by their number.
const MaxReportedBytes = 8 << 10

// Device is a device's twin as the gateway knows it.
type Device struct {
	ID       string    `json:"deviceId"`
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"lastSeen"`
	Messages uint64    `json:"messages"`
	// Bytes counts the payload bytes of its messages, Duplicates its
	// resends dropped by their sequence number (Config.SequenceField).
	Bytes      uint64          `json:"bytes"`
	Duplicates uint64          `json:"duplicates"`
	Reported   json.RawMessage `json:"reported,omitempty"` // the last payload, if at most MaxReportedBytes
	// ReportedBytes is the size of a last payload too large to keep.
	ReportedBytes int             `json:"reportedBytes,omitempty"`
	Desired       json.RawMessage `json:"desired,omitempty"`
	// The IoT Hub twin (twin.go): reported properties the device patched
	// over $iothub/twin, and each side's version.
	TwinReported    json.RawMessage `json:"twinReported,omitempty"`
	ReportedVersion uint64          `json:"reportedVersion,omitempty"`
	DesiredVersion  uint64          `json:"desiredVersion,omitempty"`
}

// deviceEntry is what the partition keeps of an active device: its
// liveness clock, which emits the Devices input's rows, and the sequence
// numbers that drop resends. Both decide what the jobs see, so they stay
// where the log is ordered (D2); the rest of the device is its actor's.
type deviceEntry struct {
	lastSeen int64
	online   bool
	seqs     map[string]uint64     // highest sequence number per job/input (duplicates)
	seqWin   map[string]*seqWindow // which numbers below it were seen, where some were not (seqwindow.go)
	// pend is the summary waiting for the device's actor (nil: none);
	// rec, the device's record while it has no actor (deviceactor.go).
	pend *deviceSummary
	rec  *deviceRecord
}

// devicesMsg gets one device (id), or lists a partition's devices in id
// order: at most limit (0: all) with ids after after.
type devicesMsg struct {
	id    string
	after string
	limit int
}

type devicesReply struct{ devices []Device }

// entry returns the device's liveness entry, making one.
func (p *partition) entry(id string) *deviceEntry {
	d := p.devices[id]
	if d == nil {
		d = &deviceEntry{}
		p.devices[id] = d
		if rec := p.dormant[id]; rec != nil {
			// Back: its record moves with it (a device with a liveness
			// entry is never also dormant).
			d.rec = rec
			delete(p.dormant, id)
		}
	}
	return d
}

// seen records an event of a device and emits "online" when it is new or
// back from silence.
func (p *partition) seen(id string, payload []byte, now int64) {
	if id == "" {
		return
	}
	d := p.entry(id)
	d.lastSeen = now
	if !d.online {
		d.online = true
		p.deviceEvent(id, "online", now)
	}
	s := deviceSummary{messages: 1, bytes: uint64(len(payload)), lastSeen: now, online: true, hasStatus: true, hasReport: true}
	// Kept for the twin's reported state only when small: 4,000 devices
	// that each sent one 200 KiB message held 800 MiB here (issue 13).
	if len(payload) <= MaxReportedBytes {
		s.reported = payload
	} else {
		s.reportedLen = int32(len(payload))
	}
	p.note(d, id, s)
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
	var gone map[string]*deviceEntry
	for _, id := range ids {
		d := p.devices[id]
		if d.online && now-d.lastSeen >= silence {
			d.online = false
			p.deviceEvent(id, "offline", now)
			p.note(d, id, deviceSummary{lastSeen: d.lastSeen, hasStatus: true})
		}
		if !d.online && now-d.lastSeen >= passivate {
			if !p.scratch {
				p.sendSummary(id) // its actor keeps the last status
			}
			delete(p.devices, id)
			if gone == nil {
				gone = map[string]*deviceEntry{}
			}
			gone[id] = d
		}
	}
	if p.scratch {
		return
	}
	// Actors activated for a write or a call alone go too, and those past
	// the partition's share.
	p.passivate(gone, p.idleDeviceActors())
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
		if err, ok := res.(error); ok {
			return nil, err
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
	if err, ok := res.(error); ok {
		return Device{}, err
	}
	devs := res.(*devicesReply).devices
	if len(devs) == 0 {
		return Device{}, fmt.Errorf("%w: %q", ErrUnknownDevice, id)
	}
	return devs[0], nil
}

// SetDesired stores a device's desired properties (a JSON object of at
// most 32 KiB) and publishes them to devices/{id}/twin/desired through the
// gateway's publisher, as IoT Hub does for module twins. Like a reported
// patch it goes through the ingest log (input twinDesiredInput): durable,
// it returns once the write is synced, so a crash after an acknowledged
// write keeps it, and a replay gives the device the same version.
func (g *Gateway) SetDesired(ctx context.Context, id string, desired []byte) error {
	if !json.Valid(desired) || len(desired) == 0 || desired[0] != '{' {
		return fmt.Errorf("%w: desired properties must be a JSON object", ErrBadRequest)
	}
	if len(desired) > maxTwinBytes {
		return fmt.Errorf("%w: desired properties of %d bytes, at most %d", ErrBadRequest, len(desired), maxTwinBytes)
	}
	if err := checkDeviceID(id); err != nil {
		return err
	}
	// One write at a time, so the version read back is this write's.
	g.desiredMu.Lock()
	defer g.desiredMu.Unlock()
	if err := g.logTwinWrite(event{input: twinDesiredInput, device: id, payload: append([]byte(nil), desired...)}); err != nil {
		return err
	}
	t, err := g.TwinOf(ctx, id)
	if err != nil {
		return err
	}
	pub := g.publisher()
	if pub == nil {
		return nil
	}
	if n, ok := pub.(DesiredNotifier); ok {
		n.NotifyDesired(id, desired, t.DesiredVersion)
	}
	return pub.Publish("devices/"+id+"/twin/desired", desired, 1)
}

// DesiredNotifier is a publisher that also tells a device of its new
// desired properties the IoT Hub way ($iothub/twin/PATCH/properties/
// desired/?$version=N, to that device's connection only).
type DesiredNotifier interface {
	NotifyDesired(id string, desired []byte, version uint64)
}
