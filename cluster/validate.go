package cluster

import (
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Every field of a message from another gateway is checked here before
// anything uses it: a partition number indexes slices, an epoch is
// incremented, a sequence number is added to, a name becomes a store key.
// The limits are far beyond what a working cluster reaches and far from
// where arithmetic overflows.
const (
	// maxEpoch: a partition changes owners once per hand-off or
	// take-over; 2^48 of them never happen. A higher epoch is forged, and
	// epoch+1 must not wrap around to 0.
	maxEpoch = 1 << 48
	// maxSeq bounds log positions and sequence numbers (first_seq +
	// entries must not wrap around and overwrite the log from 1).
	maxSeq = 1 << 62
	// maxRouteTargets bounds the job inputs one logged message is for.
	maxRouteTargets = 4096
	// maxUserProperties and maxPropertyBytes bound an event's metadata
	// (MQTT 5 user properties and the topic's property bag; the payload
	// limit bounds the whole packet at the broker already).
	maxUserProperties = 1024
	maxPropertyBytes  = 64 << 10
	// maxNameBytes bounds gateway names.
	maxNameBytes = 255
	// maxFieldBytes bounds the strings of a log entry (job, input, device).
	maxFieldBytes = 64 << 10
	// maxErrorBytes bounds the error text of a ForwardDone.
	maxErrorBytes = 4 << 10
	// maxGroups bounds the groups of one ReplLog.
	maxGroups = 1 << 16
	// maxRelayRows bounds the rows of one OutputRelay (senders send at
	// most an outbox batch, 500 by default, split to msgTargetBytes).
	maxRelayRows = 4096
	// maxTopicBytes is the longest MQTT topic name.
	maxTopicBytes = 65535
	// maxJobVersionStep: a job version (a counter, forward.go) more than
	// this far above every version this gateway knows is refused: it
	// would win over the changes of its name that many times. An
	// operator's change is one above what its gateway knows, so a forged
	// version within the step is overtaken by the next real change.
	maxJobVersionStep = 1 << 16
	// maxJobVersion: no version is this large (a counter of changes never
	// gets there); a stored one that is counts as older than any other.
	maxJobVersion = 1 << 62
	// clockVersionFloor: versions at or above it are deploy times (Unix
	// ns) stored by releases before the counters; one arriving from such a
	// gateway is taken if at most maxJobSkew ahead of this clock, as those
	// releases did.
	clockVersionFloor = 1 << 50
	maxJobSkew        = 5 * time.Minute
)

// checkGatewayName checks a gateway name (without the incarnation).
func checkGatewayName(s string) error {
	if s == "" || len(s) > maxNameBytes || !utf8.ValidString(s) || strings.ContainsRune(s, '#') {
		return reject(rejectRange, "gateway name %.64q: 1-%d bytes of UTF-8 without '#'", s, maxNameBytes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return reject(rejectRange, "gateway name %.64q: control character", s)
		}
	}
	return nil
}

// checkMemberName checks a member name: gateway name '#' incarnation
// (base 36 Unix nanoseconds, Start).
func checkMemberName(s string) error {
	base, inc, ok := strings.Cut(s, "#")
	if !ok {
		return reject(rejectMalformed, "member name %.64q: no incarnation", s)
	}
	if err := checkGatewayName(base); err != nil {
		return err
	}
	if inc == "" || len(inc) > 13 {
		return reject(rejectRange, "member name %.64q: bad incarnation", s)
	}
	for _, c := range inc {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return reject(rejectRange, "member name %.64q: bad incarnation", s)
		}
	}
	return nil
}

// checkAddr checks a remote address (host:port).
func checkAddr(s string) error {
	if len(s) > 300 {
		return reject(rejectRange, "address of %d bytes", len(s))
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return reject(rejectMalformed, "address %.64q: %v", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return reject(rejectRange, "address %.64q: bad port", s)
	}
	return nil
}

// checkHeader checks what every StreamMsg carries, heartbeats included.
func checkHeader(m *pb.StreamMsg) error {
	if err := checkMemberName(m.From); err != nil {
		return err
	}
	return checkAddr(m.Addr)
}

// checkAck checks a StreamAck.
func checkAck(a *pb.StreamAck) error { return checkMemberName(a.From) }

func checkPartition(p uint32, parts int) error {
	if int64(p) >= int64(parts) {
		return reject(rejectRange, "partition %d: this cluster has %d", p, parts)
	}
	return nil
}

func checkEpoch(e uint64) error {
	if e > maxEpoch {
		return reject(rejectRange, "epoch %d: above %d", e, uint64(maxEpoch))
	}
	return nil
}

func checkSeq(what string, s uint64) error {
	if s > maxSeq {
		return reject(rejectRange, "%s %d: above %d", what, s, uint64(maxSeq))
	}
	return nil
}

func checkPartEpoch(p uint32, e uint64, parts int) error {
	if err := checkPartition(p, parts); err != nil {
		return err
	}
	return checkEpoch(e)
}

// checkEntry checks one log entry (forwarded or replicated).
func checkEntry(e *pb.LogEntry, parts int) error {
	if e == nil {
		return reject(rejectMalformed, "empty log entry")
	}
	if len(e.Targets) > maxRouteTargets {
		return reject(rejectRange, "log entry for %d job inputs: at most %d", len(e.Targets), maxRouteTargets)
	}
	for _, t := range e.Targets {
		if t == nil || len(t.Job) > maxFieldBytes || len(t.Input) > maxFieldBytes {
			return reject(rejectRange, "log entry: a job input name over %d bytes", maxFieldBytes)
		}
	}
	if len(e.Job) > maxFieldBytes || len(e.Input) > maxFieldBytes || len(e.Device) > maxFieldBytes {
		return reject(rejectRange, "log entry: job, input or device longer than %d bytes", maxFieldBytes)
	}
	if m := e.Metadata; m != nil {
		if len(m.MessageId) > maxFieldBytes || len(m.CorrelationId) > maxFieldBytes {
			return reject(rejectRange, "log entry: message or correlation id longer than %d bytes", maxFieldBytes)
		}
		if len(m.UserProperties) > maxUserProperties {
			return reject(rejectRange, "log entry with %d user properties: at most %d", len(m.UserProperties), maxUserProperties)
		}
		for _, u := range m.UserProperties {
			if u == nil || len(u.Key) > maxFieldBytes || len(u.Value) > maxPropertyBytes {
				return reject(rejectRange, "log entry: a user property over its size limit")
			}
		}
	}
	if (e.Forwarded || e.Mark) && int64(e.SourcePartition) >= int64(parts) {
		return reject(rejectRange, "log entry: source partition %d: this cluster has %d", e.SourcePartition, parts)
	}
	if err := checkSeq("source seq", e.SourceSeq); err != nil {
		return err
	}
	if err := checkSeq("origin seq", e.OriginSeq); err != nil {
		return err
	}
	if e.Origin != "" {
		return checkMemberName(e.Origin)
	}
	return nil
}

func checkGroup(g *pb.ReplGroup, parts int) error {
	if g == nil {
		return reject(rejectMalformed, "empty replication group")
	}
	if err := checkPartEpoch(g.Partition, g.Epoch, parts); err != nil {
		return err
	}
	if g.FirstSeq == 0 || len(g.Entries) == 0 {
		return reject(rejectMalformed, "replication group of partition %d: first seq %d, %d entries", g.Partition, g.FirstSeq, len(g.Entries))
	}
	// Each bound alone first: their sum must not wrap around.
	if err := checkSeq("first seq", g.FirstSeq); err != nil {
		return err
	}
	if err := checkSeq("first seq", g.FirstSeq+uint64(len(g.Entries))); err != nil {
		return err
	}
	for _, e := range g.Entries {
		if err := checkEntry(e, parts); err != nil {
			return err
		}
	}
	return nil
}

func checkSafeCheckpoint(sc *pb.SafeCheckpoint, parts int) error {
	cp := sc.GetCheckpoint()
	if cp == nil {
		return reject(rejectMalformed, "safe checkpoint without a checkpoint")
	}
	if err := checkEpoch(sc.Epoch); err != nil {
		return err
	}
	for what, v := range map[string]uint64{"through": sc.Through, "log position": cp.LogPosition, "output seq": cp.OutputSeq} {
		if err := checkSeq(what, v); err != nil {
			return err
		}
	}
	for src := range cp.Forwarded {
		if err := checkPartition(src, parts); err != nil {
			return err
		}
	}
	for src := range cp.ForwardedIndex {
		if err := checkPartition(src, parts); err != nil {
			return err
		}
	}
	return nil
}

// checkJobUpdate checks a job update's fields alone (applyJob checks its
// version against the versions this gateway knows); now is this gateway's
// clock (Unix ns).
func checkJobUpdate(u *pb.JobUpdate, now int64) error {
	if u == nil {
		return reject(rejectMalformed, "empty job update")
	}
	if (u.Job == nil) == (u.Removed == "") {
		return reject(rejectMalformed, "job update: exactly one of job and removed is set")
	}
	if name := jobName(u); name == "" || len(name) > maxFieldBytes || !utf8.ValidString(name) {
		return reject(rejectRange, "job update: job name of %d bytes", len(name))
	}
	if err := checkMemberName(u.Origin); err != nil {
		return err
	}
	if u.Version <= 0 {
		return reject(rejectRange, "job update %q: version %d", jobName(u), u.Version)
	}
	if u.Version >= maxJobVersion || u.Version >= clockVersionFloor && u.Version > now+int64(maxJobSkew) {
		return reject(rejectFuture, "job update %q from %s: version %d is out of range", jobName(u), u.Origin, u.Version)
	}
	return nil
}

// checkBody checks a stream message's body, with the header checked
// already; parts is the cluster's number of partitions, now this
// gateway's clock (Unix ns).
func checkBody(m *pb.StreamMsg, parts int, now int64) error {
	switch b := m.Body.(type) {
	case *pb.StreamMsg_Log:
		gs := b.Log.GetGroups()
		if len(gs) == 0 || len(gs) > maxGroups {
			return reject(rejectRange, "replication of %d groups", len(gs))
		}
		for _, g := range gs {
			if err := checkGroup(g, parts); err != nil {
				return err
			}
		}
	// An empty body decodes as an empty message, never nil; the getters
	// read nil as zeros all the same.
	case *pb.StreamMsg_Checkpoint:
		c := b.Checkpoint
		if err := checkPartEpoch(c.GetPartition(), c.GetEpoch(), parts); err != nil {
			return err
		}
		return checkSafeCheckpoint(c.GetSafe(), parts)
	case *pb.StreamMsg_Reset_:
		return checkPartEpoch(b.Reset_.GetPartition(), b.Reset_.GetEpoch(), parts)
	case *pb.StreamMsg_CaughtUp:
		return checkPartition(b.CaughtUp.GetPartition(), parts)
	case *pb.StreamMsg_Handoff:
		if err := checkPartEpoch(b.Handoff.GetPartition(), b.Handoff.GetEpoch(), parts); err != nil {
			return err
		}
		return checkSeq("last seq", b.Handoff.GetLastSeq())
	case *pb.StreamMsg_HandoffRequest:
		r := b.HandoffRequest
		if err := checkPartEpoch(r.GetPartition(), r.GetEpoch(), parts); err != nil {
			return err
		}
		return checkSeq("last seq", r.GetLastSeq())
	case *pb.StreamMsg_Forward:
		return checkForward(b.Forward, m.From, parts)
	case *pb.StreamMsg_ForwardDone:
		if e := b.ForwardDone.GetError(); len(e) > maxErrorBytes {
			return reject(rejectRange, "forward answer: error of %d bytes", len(e))
		}
	case *pb.StreamMsg_Job:
		return checkJobUpdate(b.Job, now)
	case *pb.StreamMsg_Forget:
		return checkGatewayName(b.Forget.GetGateway())
	case *pb.StreamMsg_OutputRelay:
		return checkOutputRelay(b.OutputRelay)
	case *pb.StreamMsg_Promise:
		return checkPartEpoch(b.Promise.GetPartition(), b.Promise.GetEpoch(), parts)
	case *pb.StreamMsg_Promised:
		return checkPartEpoch(b.Promised.GetPartition(), b.Promised.GetPromised(), parts)
	case *pb.StreamMsg_StatusRequest:
	case *pb.StreamMsg_StatusReply:
		hs := b.StatusReply.GetPartitions()
		if len(hs) > parts {
			return reject(rejectRange, "status reply of %d partitions: this cluster has %d", len(hs), parts)
		}
		for _, h := range hs {
			if h == nil {
				return reject(rejectMalformed, "empty partition in a status reply")
			}
			if err := checkPartEpoch(h.Partition, h.Epoch, parts); err != nil {
				return err
			}
			if err := checkEpoch(h.Promised); err != nil {
				return err
			}
			if err := checkSeq("last seq", h.LastSeq); err != nil {
				return err
			}
		}
	default:
		return reject(rejectMalformed, "stream message without a body")
	}
	return nil
}

// checkForward checks a forwarded batch: every entry must carry its
// sender's gateway as origin (this incarnation, or an earlier one for
// input parked before a restart, C11), or the sender could make the
// partition drop another gateway's events as already applied (C7
// deduplicates by origin).
func checkForward(fb *pb.ForwardBatch, from string, parts int) error {
	if fb == nil {
		return reject(rejectMalformed, "empty forwarded batch")
	}
	if err := checkPartition(fb.Partition, parts); err != nil {
		return err
	}
	if len(fb.Entries) == 0 || len(fb.Entries) > forwardBatchMax {
		return reject(rejectRange, "forwarded batch of %d entries: 1-%d", len(fb.Entries), forwardBatchMax)
	}
	for _, e := range fb.Entries {
		if err := checkEntry(e, parts); err != nil {
			return err
		}
		if baseOf(e.Origin) != baseOf(from) || e.OriginSeq == 0 {
			return reject(rejectIdentity, "forwarded entry of origin %.64q seq %d from %s", e.Origin, e.OriginSeq, from)
		}
	}
	return nil
}

// checkOutputRelay checks relayed output rows: names and topics bounded
// UTF-8, topics valid MQTT topic names to publish on (no wildcards, no
// NUL), payloads bounded by the message size the link guard checked.
// Whether a job here has the output, and its template gives the topics,
// the gateway checks before it publishes (actors/relay.go, R2).
func checkOutputRelay(r *pb.OutputRelay) error {
	if r == nil {
		return reject(rejectMalformed, "empty output relay")
	}
	for what, s := range map[string]string{"job": r.Job, "output": r.Output} {
		if s == "" || len(s) > maxFieldBytes || !utf8.ValidString(s) {
			return reject(rejectRange, "output relay: %s name of %d bytes, or not UTF-8", what, len(s))
		}
	}
	if len(r.Rows) == 0 || len(r.Rows) > maxRelayRows {
		return reject(rejectRange, "output relay of %d rows: 1-%d", len(r.Rows), maxRelayRows)
	}
	for _, row := range r.Rows {
		t := row.GetTopic()
		if t == "" || len(t) > maxTopicBytes || !utf8.ValidString(t) || strings.ContainsAny(t, "+#\x00") {
			return reject(rejectRange, "output relay: topic %.64q is not an MQTT topic name", t)
		}
		if len(row.GetPayload()) == 0 {
			return reject(rejectMalformed, "output relay: a row without a payload")
		}
	}
	return nil
}
