package actors

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Device actors (issue 16). A device the gateway hears from has a
// virtual actor (up to the partition's share of Config.DeviceActors; see
// Activation), a child of its partition actor, that owns the device's
// control plane: its status as operators see it (online, last seen), its
// counters (messages, bytes, duplicates dropped), its last reported
// payload, and both sides of its twin (reported and desired, with their
// versions). It is addressed by device id through its partition
// (Gateway.partitionOf), activated on demand and passivated when idle.
//
// What orders the data stays with the partition, because a replay must
// make the same decisions at the same log positions (D2): the liveness
// clock that emits the Devices input's online and offline rows into the
// jobs, and the sequence numbers that drop resends (deviceEntry). The
// partition sends each device actor a summary of what changed, not a
// message per event: per event it only adds to the device's pending
// summary, and it sends the summaries every summaryInterval (in memory),
// with the checkpoint's request for their state (durable), before it
// answers a read, and before it passivates the actor. A summary adds counts and
// sets the latest status, so the actor's state after it does not depend
// on when it was sent: a replay from a checkpoint gives the same state.
//
// Every message to a device actor comes from its partition's goroutine,
// in order: a read the partition forwards is answered after every summary
// sent before it. The checkpoint keeps each device's control state with
// the partition's (pb.DeviceState, Checkpoint.Desired), in the format the
// partition wrote before device actors, so checkpoints on disk and on
// replicas read back unchanged.
//
// Activation: a device actor is spawned when its partition has something
// for it (a summary, a twin write, a direct method call), from the record
// the partition kept for it without an actor (recovered from a
// checkpoint, or passivated). Summaries activate at most the partition's
// share of Config.DeviceActors: an actor costs about 1.3 KiB, so with a
// million devices the others' summaries are added by the partition to
// the record it keeps for them, with the same code (deviceRecord.apply),
// and an actor is activated for one of them when a write or a call needs
// it. Passivation: when the partition's sweep drops a device's liveness
// entry (offline for Config.PassivateAfter), or finds an actor whose
// device has none (one activated for a write), it asks the actor for its
// record, stops it, and keeps only what outlives passivation: the twin
// and the last time seen. So memory follows active devices.

// summaryInterval is how often, in memory, a partition sends the device
// actors their summaries (durable: with each checkpoint). Reads and
// passivation send a device's first, so nobody sees an older record.
const summaryInterval = 5 * time.Second

// deviceRecord is a device's control state: what its actor owns, or its
// partition keeps for it while it has none. Small, because a gateway may
// keep a million: the twin, which few devices have, is apart.
type deviceRecord struct {
	lastSeen    int64
	online      bool
	reportedLen int32 // size of a last payload too large to keep
	messages    uint64
	bytes       uint64
	duplicates  uint64
	reported    []byte
	twin        *deviceTwin // nil: neither side ever written
}

// deviceTwin is a device's twin (twin.go): the reported properties the
// device patched, the desired ones an operator set, each with its version.
type deviceTwin struct {
	reported        []byte
	reportedVersion uint64
	desired         []byte // nil: none set
	desiredVersion  uint64
}

// dormant trims a record to what a passivated device keeps; ok is false
// when nothing is worth keeping.
func (r *deviceRecord) dormant() (*deviceRecord, bool) {
	if r == nil || r.twin == nil {
		return nil, false
	}
	return &deviceRecord{lastSeen: r.lastSeen, twin: r.twin}, true
}

// view is the record as the admin API shows it.
func (r *deviceRecord) view(id string) Device {
	out := Device{ID: id, Online: r.online, Messages: r.messages, Bytes: r.bytes, Duplicates: r.duplicates,
		ReportedBytes: int(r.reportedLen)}
	if r.lastSeen != 0 {
		out.LastSeen = value.ToTime(r.lastSeen)
	}
	if json.Valid(r.reported) {
		out.Reported = append(json.RawMessage(nil), r.reported...)
	}
	if t := r.twin; t != nil {
		out.ReportedVersion = t.reportedVersion
		if len(t.reported) > 0 {
			out.TwinReported = append(json.RawMessage(nil), t.reported...)
		}
		if t.desired != nil {
			out.Desired = append(json.RawMessage(nil), t.desired...)
			out.DesiredVersion = t.desiredVersion
		}
	}
	return out
}

// twinOf returns the record's twin, making it.
func (r *deviceRecord) twinOf() *deviceTwin {
	if r.twin == nil {
		r.twin = &deviceTwin{}
	}
	return r.twin
}

// deviceSummary is what changed for a device since its partition last
// told its actor: counts to add, and the latest status and payload.
type deviceSummary struct {
	messages, bytes, duplicates uint64
	lastSeen                    int64
	online                      bool
	hasStatus                   bool // lastSeen and online are set
	// reported is the last payload kept (at most MaxReportedBytes), or
	// reportedLen the size of one too large to keep; neither unless
	// hasReport.
	reported    []byte
	reportedLen int32
	hasReport   bool
}

// add merges a later summary into s.
func (s *deviceSummary) add(o deviceSummary) {
	s.messages += o.messages
	s.bytes += o.bytes
	s.duplicates += o.duplicates
	if o.hasStatus {
		s.lastSeen, s.online, s.hasStatus = o.lastSeen, o.online, true
	}
	if o.hasReport {
		s.reported, s.reportedLen, s.hasReport = o.reported, o.reportedLen, true
	}
}

// Messages to a device actor, all sent by its partition.
type (
	// summaryMsg brings a summary.
	summaryMsg struct{ s deviceSummary }
	// twinPatchMsg brings a logged reported-properties patch.
	twinPatchMsg struct{ patch []byte }
	// setDesiredMsg brings logged desired properties.
	setDesiredMsg struct{ desired []byte }
	// stateMsg asks for the actor's record on its partition's channel,
	// with the summary waiting for it if any (one message for both).
	stateMsg struct {
		s     *deviceSummary
		idx   int
		reply chan<- deviceAnswer
	}
)

// deviceAnswer is a device actor's answer to stateMsg: its record, and
// whether direct method calls wait for the device (methods.go), which
// keeps it from being passivated.
type deviceAnswer struct {
	idx  int // the place of the device among those asked
	rec  deviceRecord
	busy bool
}

// deviceDispatcher runs a device actor's mailbox on the goroutine of
// whoever sends to it while it is idle: its partition, which sends it
// everything. A device actor's message is a few field updates, and
// handing each to another goroutine (protoactor's default dispatcher
// starts one per mailbox run) and its answer back cost more than the
// message: with a goroutine per run, the checkpoint's requests for
// 10,000 devices' records cost 9% more CPU per message end to end
// (RESULTS.md, "Device actors"). The actor keeps its own mailbox, state
// and supervision; its Receive never blocks (a direct method's write to
// the device runs on its own goroutine).
var deviceDispatcher = actor.NewSynchronizedDispatcher(300)

// deviceFault, set by tests, runs before a device actor handles a
// message (a panic there is a device actor's failure).
var deviceFault func(id string, msg any)

// deviceActor is the actor of one device.
type deviceActor struct {
	g       *Gateway
	id      string
	rec     deviceRecord
	pending map[string]pendingMethod // direct method calls by request id
}

func (a *deviceActor) Receive(ctx actor.Context) {
	// A panic keeps the actor and its record (the message is dropped), and
	// never leaves its partition or a caller waiting for an answer.
	answered := false
	defer func() {
		if r := recover(); r != nil {
			a.g.deviceFailures.Add(1)
			a.g.cfg.Logger.Error("device actor panicked; the message is dropped, the actor keeps its record", "device", a.id, "panic", fmt.Sprint(r))
			switch m := ctx.Message().(type) {
			case *stateMsg:
				if !answered {
					m.reply <- deviceAnswer{idx: m.idx, rec: a.rec}
				}
			case *methodMsg:
				ctx.Respond(&methodReply{err: fmt.Errorf("actors: device %q: its actor failed", a.id)})
			case *devicesMsg, *twinMsg:
				ctx.Respond(fmt.Errorf("actors: device %q: its actor failed", a.id))
			}
		}
	}()
	if deviceFault != nil {
		deviceFault(a.id, ctx.Message())
	}
	switch m := ctx.Message().(type) {
	case *summaryMsg:
		a.summary(m.s)
	case *twinPatchMsg:
		a.patchTwin(m.patch)
	case *stateMsg:
		if m.s != nil {
			a.summary(*m.s)
		}
		a.expireMethods(time.Now())
		answered = true
		m.reply <- deviceAnswer{idx: m.idx, rec: a.rec, busy: len(a.pending) > 0}
	case *methodMsg:
		a.call(ctx, m)
	case *actor.Stopping:
		// Passivation waits for calls; a reset, a restart or a release
		// of the partition does not: their callers learn at once.
		for rid, pm := range a.pending {
			ctx.Send(pm.caller, &methodReply{err: fmt.Errorf("%w: the device's partition was reset or handed off", ErrDeviceNotOnline)})
			delete(a.pending, rid)
			a.g.methodsPending.Add(-1)
		}
	case *methodAnswerMsg:
		a.answer(ctx, m)
	case *devicesMsg:
		ctx.Respond(&devicesReply{devices: []Device{a.rec.view(a.id)}})
	case *twinMsg:
		ctx.Respond(twinView(a.rec.twin))
	case *setDesiredMsg:
		t := a.rec.twinOf()
		t.desired = m.desired
		t.desiredVersion++
	}
}

func (a *deviceActor) summary(s deviceSummary) { a.rec.apply(s) }

// apply adds a summary to the record: in the device's actor, or, for a
// device without one, in its partition (sendSummary).
func (r *deviceRecord) apply(s deviceSummary) {
	r.messages += s.messages
	r.bytes += s.bytes
	r.duplicates += s.duplicates
	if s.hasStatus {
		r.lastSeen, r.online = s.lastSeen, s.online
	}
	if s.hasReport {
		r.reported, r.reportedLen = s.reported, s.reportedLen
	}
}

// patchTwin merges a logged reported patch into the twin. A patch that
// would make the twin too large is skipped (the same on every replay).
func (a *deviceActor) patchTwin(patch []byte) {
	var doc, p map[string]any
	if a.rec.twin != nil && len(a.rec.twin.reported) > 0 {
		_ = json.Unmarshal(a.rec.twin.reported, &doc)
	}
	if json.Unmarshal(patch, &p) != nil {
		return // checked before it was logged
	}
	doc = mergePatch(doc, p)
	b, _ := json.Marshal(doc)
	if len(b) > maxTwinBytes {
		a.g.cfg.Logger.Warn("twin reported properties patch refused: the twin would be too large", "device", a.id, "bytes", len(b), "max", maxTwinBytes)
		return
	}
	t := a.rec.twinOf()
	t.reported = b
	t.reportedVersion++
}

// twinView is a twin as IoT Hub returns it (nil: never written).
func twinView(dt *deviceTwin) Twin {
	t := Twin{Desired: json.RawMessage("{}"), Reported: json.RawMessage("{}")}
	if dt == nil {
		return t
	}
	t.ReportedVersion, t.DesiredVersion = dt.reportedVersion, dt.desiredVersion
	if len(dt.desired) > 0 {
		t.Desired = append(json.RawMessage(nil), dt.desired...)
	}
	if len(dt.reported) > 0 {
		t.Reported = append(json.RawMessage(nil), dt.reported...)
	}
	return t
}

// The partition's side: activation, summaries, passivation.

// recordOf returns the record the partition keeps for a device without
// an actor (nil: none).
func (p *partition) recordOf(id string) *deviceRecord {
	if d := p.devices[id]; d != nil && d.rec != nil {
		return d.rec
	}
	return p.dormant[id]
}

// deviceActorOf returns the device's actor, activating it (with the
// record the partition kept for it, if any) when it has none.
func (p *partition) deviceActorOf(id string) *actor.PID {
	if pid := p.deviceActors[id]; pid != nil {
		return pid
	}
	a := &deviceActor{g: p.g, id: id}
	if d := p.devices[id]; d != nil && d.rec != nil {
		a.rec, d.rec = *d.rec, nil
	} else if rec := p.dormant[id]; rec != nil {
		a.rec = *rec
		delete(p.dormant, id)
	}
	pid := p.ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }, actor.WithDispatcher(deviceDispatcher)))
	p.deviceActors[id] = pid
	p.g.deviceActivations.Add(1)
	p.g.deviceActorsLive.Add(1)
	return pid
}

// note adds one event's changes to its device: to the summary waiting
// for the device's actor, or, for a device without one past the
// partition's share of Config.DeviceActors, to the record the partition
// keeps for it.
func (p *partition) note(d *deviceEntry, id string, s deviceSummary) {
	switch {
	case p.scratch:
		// A rebuild has no device actors.
	case d.pend != nil:
		d.pend.add(s)
	case p.deviceActors[id] == nil && len(p.deviceActors) >= p.deviceActorCap():
		p.keep(d, s)
	default:
		d.pend = &deviceSummary{}
		d.pend.add(s)
		p.toSummarize = append(p.toSummarize, id)
	}
}

// keep adds a summary to the record the partition keeps for a device
// without an actor.
func (p *partition) keep(d *deviceEntry, s deviceSummary) {
	if d.rec == nil {
		d.rec = &deviceRecord{}
	}
	d.rec.apply(s)
}

// sendSummaries sends every waiting summary to its device's actor.
func (p *partition) sendSummaries() {
	for _, id := range p.toSummarize {
		p.sendSummary(id)
	}
	p.toSummarize = p.toSummarize[:0]
}

// sendSummary sends one device's waiting summary, if it has one, to its
// actor, activating one for it if the partition's share allows.
func (p *partition) sendSummary(id string) {
	d := p.devices[id]
	if d == nil || d.pend == nil {
		return
	}
	s := *d.pend
	d.pend = nil
	if p.deviceActors[id] == nil && len(p.deviceActors) >= p.deviceActorCap() {
		p.keep(d, s) // the share was taken since the event
		return
	}
	p.ctx.Send(p.deviceActorOf(id), &summaryMsg{s: s})
}

// deviceActorCap is the most device actors the partition activates for
// summaries.
func (p *partition) deviceActorCap() int {
	return max(1, p.g.cfg.DeviceActors/p.g.cfg.Partitions)
}

// deviceStates returns the records of ids, in their order: each actor's
// (with its waiting summary, in the same message), or the one the
// partition keeps; a device with neither gets a zero record.
func (p *partition) deviceStates(ids []string) ([]deviceAnswer, error) {
	out := make([]deviceAnswer, len(ids))
	// Room for every answer: an actor answers as it is sent the request,
	// on this goroutine (deviceDispatcher), before the partition reads.
	replies := make(chan deviceAnswer, len(ids))
	asked := 0
	for i, id := range ids {
		pid := p.deviceActors[id]
		var s *deviceSummary
		if d := p.devices[id]; d != nil && d.pend != nil {
			if pid == nil {
				p.sendSummary(id) // activates an actor, or keeps it in d.rec
				pid = p.deviceActors[id]
			} else {
				s, d.pend = d.pend, nil
			}
		}
		if pid != nil {
			p.ctx.Send(pid, &stateMsg{s: s, idx: i, reply: replies})
			asked++
		} else if rec := p.recordOf(id); rec != nil {
			out[i] = deviceAnswer{idx: i, rec: *rec}
		}
	}
	if asked == 0 {
		return out, nil
	}
	// Every actor answers, if need be from its own recover; the wait is
	// bounded all the same, so that no failure of one can stop its
	// partition for good.
	timer := time.NewTimer(deviceAnswerWait)
	defer timer.Stop()
	for ; asked > 0; asked-- {
		select {
		case st := <-replies:
			out[st.idx] = st
		case <-timer.C:
			return nil, fmt.Errorf("partition %d: %d device actors did not answer within %v", p.id, asked, deviceAnswerWait)
		}
	}
	return out, nil
}

// deviceAnswerWait bounds the wait for device actors' answers.
const deviceAnswerWait = 10 * time.Second

// passivate stops the actors of devices whose liveness entries the sweep
// dropped (gone: their entries, with the records kept for those without
// an actor), of idle ones, and of those past the partition's share of
// Config.DeviceActors (activated for a twin write or a call). A device
// still active keeps its whole record in the partition; one that is not,
// what it keeps while dormant. An actor with direct method calls waiting
// stays until they are answered or expire.
func (p *partition) passivate(gone map[string]*deviceEntry, idle []string) {
	ids := make([]string, 0, len(gone)+len(idle))
	for id, d := range gone {
		if p.deviceActors[id] == nil {
			// No actor: its record is the partition's.
			if rec, ok := d.rec.dormant(); ok {
				p.dormant[id] = rec
			}
			continue
		}
		ids = append(ids, id)
	}
	for _, id := range idle {
		if gone[id] == nil { // the sweep's own are in gone
			ids = append(ids, id)
		}
	}
	if over := len(p.deviceActors) - len(ids) - p.deviceActorCap(); over > 0 {
		var extra []string
		for id := range p.deviceActors {
			if p.devices[id] != nil {
				extra = append(extra, id)
			}
		}
		sort.Strings(extra)
		ids = append(ids, extra[:min(over, len(extra))]...)
	}
	if len(ids) == 0 {
		return
	}
	states, err := p.deviceStates(ids)
	if err != nil {
		p.g.cfg.Logger.Error("device actors not passivated", "error", err)
		return
	}
	for i, id := range ids {
		st := states[i]
		if st.busy {
			continue
		}
		p.ctx.Stop(p.deviceActors[id])
		delete(p.deviceActors, id)
		p.g.devicePassivations.Add(1)
		p.g.deviceActorsLive.Add(-1)
		if d := p.devices[id]; d != nil {
			rec := st.rec
			d.rec = &rec // still active: kept whole by the partition
		} else if rec, ok := st.rec.dormant(); ok {
			p.dormant[id] = rec
		}
	}
}

// stopDeviceActors stops every device actor, keeping nothing (reset).
func (p *partition) stopDeviceActors() {
	for _, pid := range p.deviceActors {
		p.ctx.Stop(pid)
		p.g.deviceActorsLive.Add(-1)
	}
	p.deviceActors = map[string]*actor.PID{}
	p.dormant = map[string]*deviceRecord{}
	p.toSummarize = p.toSummarize[:0]
}

// idleDeviceActors lists the actors whose device has no liveness entry:
// activated for a write or a call, they are passivated at the next sweep.
func (p *partition) idleDeviceActors() []string {
	var ids []string
	for id := range p.deviceActors {
		if p.devices[id] == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// knownDevices lists, in id order, the devices the partition knows with
// ids after after: those with a liveness entry, an actor or a dormant
// record.
func (p *partition) knownDevices(after string) []string {
	ids := make([]string, 0, len(p.devices)+len(p.dormant))
	for id := range p.devices {
		if id > after {
			ids = append(ids, id)
		}
	}
	for id := range p.deviceActors {
		if id > after && p.devices[id] == nil {
			ids = append(ids, id)
		}
	}
	for id := range p.dormant {
		if id > after { // never also in devices or deviceActors
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// deviceCheckpoint writes the devices into cp: each device's liveness
// and duplicate state from the partition, its control state from its
// actor (or the record the partition keeps).
func (p *partition) deviceCheckpoint(cp *pb.Checkpoint) error {
	ids := p.knownDevices("")
	states, err := p.deviceStates(ids) // every waiting summary is sent
	if err != nil {
		return err
	}
	p.toSummarize = p.toSummarize[:0]
	for i, id := range ids {
		rec := states[i].rec
		ds := &pb.DeviceState{Id: id, LastSeen: rec.lastSeen, Online: rec.online, Messages: rec.messages, Reported: rec.reported,
			Bytes: rec.bytes, Duplicates: rec.duplicates}
		if t := rec.twin; t != nil {
			ds.TwinReported, ds.ReportedVersion = t.reported, t.reportedVersion
			if t.desired != nil || t.desiredVersion != 0 {
				if cp.Desired == nil {
					cp.Desired, cp.DesiredVersions = map[string][]byte{}, map[string]uint64{}
				}
				cp.Desired[id] = t.desired
				cp.DesiredVersions[id] = t.desiredVersion
			}
		}
		if d := p.devices[id]; d != nil {
			ds.LastSeen, ds.Online, ds.Sequences = d.lastSeen, d.online, d.seqs
			for key, w := range d.seqWin {
				if ds.SequenceWindows == nil {
					ds.SequenceWindows = map[string][]byte{}
				}
				ds.SequenceWindows[key] = w.bytes()
			}
		}
		cp.Devices = append(cp.Devices, ds)
	}
	return nil
}

// restoreDevices takes the devices from a checkpoint: liveness entries
// for those that had one, and every record kept by the partition (each
// actor is activated when its device next needs it).
func (p *partition) restoreDevices(cp *pb.Checkpoint) {
	if !p.scratch && len(p.deviceActors) > 0 {
		// Recovery starts from the checkpoint's records alone (an actor
		// activated before it would hold an empty one beside them).
		p.stopDeviceActors()
	}
	recs := make(map[string]*deviceRecord, len(cp.Devices))
	for _, d := range cp.Devices {
		if !p.scratch { // a rebuild has no device records
			rec := &deviceRecord{lastSeen: d.LastSeen, online: d.Online, messages: d.Messages, reported: d.Reported,
				bytes: d.Bytes, duplicates: d.Duplicates}
			if d.TwinReported != nil || d.ReportedVersion != 0 {
				rec.twin = &deviceTwin{reported: d.TwinReported, reportedVersion: d.ReportedVersion}
			}
			recs[d.Id] = rec
		}
		if d.Online || d.Messages != 0 || d.Reported != nil || d.Sequences != nil || d.SequenceWindows != nil {
			ds := &deviceEntry{lastSeen: d.LastSeen, online: d.Online, seqs: d.Sequences}
			for key, b := range d.SequenceWindows {
				if w := seqWindowOf(b); w != nil {
					if ds.seqWin == nil {
						ds.seqWin = map[string]*seqWindow{}
					}
					ds.seqWin[key] = w
				}
			}
			p.devices[d.Id] = ds
		}
	}
	if p.scratch {
		return
	}
	desired := func(id string) *deviceTwin {
		rec := recs[id]
		if rec == nil {
			rec = &deviceRecord{}
			recs[id] = rec
		}
		return rec.twinOf()
	}
	for id, des := range cp.Desired {
		t := desired(id)
		t.desired, t.desiredVersion = des, cp.DesiredVersions[id]
		if t.desired == nil {
			t.desired = []byte{} // set, if empty
		}
	}
	for id, v := range cp.DesiredVersions {
		if _, ok := cp.Desired[id]; !ok {
			desired(id).desiredVersion = v
		}
	}
	for id, rec := range recs {
		if d := p.devices[id]; d != nil {
			d.rec = rec
		} else {
			p.dormant[id] = rec
		}
	}
}

// readDevice answers a read of one device (twin: its Twin, else its
// Device): its actor answers, after its waiting summary; a device without
// one is answered from its dormant state.
func (p *partition) readDevice(ctx actor.Context, id string, twin bool) {
	p.sendSummary(id)
	if pid := p.deviceActors[id]; pid != nil {
		ctx.Forward(pid)
		return
	}
	rec := p.recordOf(id)
	switch {
	case twin:
		var dt *deviceTwin
		if rec != nil {
			dt = rec.twin
		}
		ctx.Respond(twinView(dt))
	case rec != nil:
		ctx.Respond(&devicesReply{devices: []Device{rec.view(id)}})
	default:
		ctx.Respond(&devicesReply{})
	}
}

// listDevices answers a listing: at most limit devices (0: all) with ids
// after after, in id order, each as its actor has it.
func (p *partition) listDevices(after string, limit int) (*devicesReply, error) {
	ids := p.knownDevices(after)
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	states, err := p.deviceStates(ids)
	if err != nil {
		return nil, err
	}
	r := &devicesReply{devices: make([]Device, 0, len(ids))}
	for i, id := range ids {
		rec := states[i].rec
		r.devices = append(r.devices, rec.view(id))
	}
	return r, nil
}

var (
	descDeviceActors      = prometheus.NewDesc("millstream_device_actors", "Device actors live on this gateway (devices active within the passivation time, and those activated for a twin write or a direct method call).", nil, nil)
	descDeviceActivations = prometheus.NewDesc("millstream_device_actor_activations_total", "Device actors activated: a device heard from again, a twin written, or a direct method called.", nil, nil)
	descDevicePassivation = prometheus.NewDesc("millstream_device_actor_passivations_total", "Device actors passivated: their device idle past the passivation time, activated for a write or a call alone, or past the partition's share of actors.", nil, nil)
	descDeviceFailures    = prometheus.NewDesc("millstream_device_actor_failures_total", "Device actors that panicked on a message: the message is dropped, the actor keeps its record.", nil, nil)
	descMethodCalls       = prometheus.NewDesc("millstream_direct_method_calls_total", "Direct method calls by outcome: written to the device, timed out, and answers no call waited for (stray_answer).", []string{"outcome"}, nil)
)

// deviceCollector exports the device actors' figures.
type deviceCollector struct{ g *Gateway }

func (c deviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDeviceActors
	ch <- descDeviceActivations
	ch <- descDevicePassivation
	ch <- descMethodCalls
	ch <- descDeviceFailures
}

func (c deviceCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descDeviceActors, prometheus.GaugeValue, float64(c.g.deviceActorsLive.Load()))
	ch <- prometheus.MustNewConstMetric(descDeviceActivations, prometheus.CounterValue, float64(c.g.deviceActivations.Load()))
	ch <- prometheus.MustNewConstMetric(descDevicePassivation, prometheus.CounterValue, float64(c.g.devicePassivations.Load()))
	ch <- prometheus.MustNewConstMetric(descDeviceFailures, prometheus.CounterValue, float64(c.g.deviceFailures.Load()))
	ch <- prometheus.MustNewConstMetric(descMethodCalls, prometheus.CounterValue, float64(c.g.methodCalls.Load()), "written")
	ch <- prometheus.MustNewConstMetric(descMethodCalls, prometheus.CounterValue, float64(c.g.methodTimeouts.Load()), "timeout")
	ch <- prometheus.MustNewConstMetric(descMethodCalls, prometheus.CounterValue, float64(c.g.methodStrayAnswers.Load()), "stray_answer")
}
