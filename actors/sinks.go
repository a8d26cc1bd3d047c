package actors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Publisher publishes an MQTT message (the embedded broker, or a client
// of an external one).
type Publisher interface {
	Publish(topic string, payload []byte, qos byte) error
}

// Outputs is the gateway's Sink: one deliverer per output a job
// declares (MQTT, a JSON-lines file with size-based rotation, HTTP, or a
// log writer), fed by one drainer per output from the outbox (outbox.go).
// The outbox is the store's once EnableOutbox is called, else one kept in
// memory (state.MemOutbox): rows take the same path in both modes. Every
// MQTT, file and HTTP row carries "_id", the id its partition gave it, so
// receivers can drop duplicates. Safe for concurrent use.
type Outputs struct {
	mu    sync.RWMutex         // guards sinks, pub, drainers; read on every row
	sinks map[string]deliverer // job/output (lower case)
	pub   Publisher
	log   io.Writer
	logMu sync.Mutex
	roots *DataRoots // nil: files anywhere (tests, embedding)

	box      state.Outbox // a MemOutbox until EnableOutbox
	logger   *slog.Logger
	drainers map[string]*drainer
	// system runs the drainers (actors, started with the first).
	system *actor.ActorSystem
	full   atomic.Int32 // outputs over quota with policy "reject"
	// fenced (clustered): the gateway lost its quorum; drainers hold
	// their rows meanwhile (set before the first row).
	fenced func() bool
	// abandoned: per output, per partition, the outbox seq up to which
	// the partition's rows are dropped (Abandon). Replaced whole, never
	// changed, so drainers read it without a lock (never o.mu: Configure
	// holds o.mu while it waits for an old drainer to stop); abandonMu
	// orders the writers.
	abandonMu sync.Mutex
	abandoned atomic.Pointer[map[string]map[int]uint64]
	// relay: where MQTT outputs hand what they published (relay.go).
	relay atomic.Pointer[relayLink]
}

var _ Sink = (*Outputs)(nil)

// warnLogger is where problems with outputs are logged: the durable
// mode's logger, else the default one.
func (o *Outputs) warnLogger() *slog.Logger {
	if o.logger != nil {
		return o.logger
	}
	return slog.Default()
}

// NewOutputs makes an Outputs that publishes through pub and logs to log,
// with its outbox in memory.
func NewOutputs(pub Publisher, log io.Writer) *Outputs {
	return &Outputs{sinks: map[string]deliverer{}, pub: pub, log: log, box: state.NewMemOutbox(), drainers: map[string]*drainer{}}
}

// SetPublisher sets where MQTT outputs go (before the first Configure).
func (o *Outputs) SetPublisher(pub Publisher) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pub = pub
}

// SetDataRoots confines the job's files (file outputs, reference files,
// "file:" header values) to roots (before the first Configure). Nil:
// unconfined, for tests and embedding; the gateway command always sets it.
func (o *Outputs) SetDataRoots(roots *DataRoots) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.roots = roots
}

// preparedOutput is what Configure needs of an output once its paths
// are confined and its secrets read.
type preparedOutput struct {
	path string       // file output: the resolved path
	http *pb.HttpSink // HTTP output: a copy with the header values read
}

// prepareJob checks every file and secret reference of a job before any
// sink changes, so a refused job leaves the running one as it was.
func prepareJob(roots *DataRoots, job *pb.Job) ([]preparedOutput, error) {
	var errs []error
	for _, in := range job.Inputs {
		if in.ReferenceFile == "" {
			continue
		}
		if _, err := roots.ReferenceFile(in.ReferenceFile); err != nil {
			errs = append(errs, fmt.Errorf("actors: job %q input %q: reference_file: %w", job.Name, in.Name, err))
		}
	}
	prep := make([]preparedOutput, len(job.Outputs))
	for i, out := range job.Outputs {
		switch s := out.Sink.(type) {
		case *pb.JobOutput_File:
			p, err := roots.OutputFile(s.File.Path)
			if err == nil {
				err = checkOwned(p)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("actors: job %q output %q: %w", job.Name, out.Name, err))
			}
			prep[i].path = p
		case *pb.JobOutput_Http:
			if s.Http.Url == "" {
				errs = append(errs, fmt.Errorf("actors: job %q output %q: http sink needs a url", job.Name, out.Name))
				continue
			}
			h, err := resolveHeaders(roots, s.Http.Headers)
			if err != nil {
				errs = append(errs, fmt.Errorf("actors: job %q output %q: %w", job.Name, out.Name, err))
				continue
			}
			c := proto.Clone(s.Http).(*pb.HttpSink)
			c.Headers = h
			prep[i].http = c
		}
	}
	return prep, errors.Join(errs...)
}

// Configure (re)creates the sinks of a job and their drainers. Its files
// must lie under the data roots and its header references must resolve;
// a job that fails those checks changes nothing.
func (o *Outputs) Configure(job *pb.Job) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	prep, err := prepareJob(o.roots, job)
	if err != nil {
		return err
	}
	for i, out := range job.Outputs {
		key := strings.ToLower(job.Name + "/" + out.Name)
		if old := o.drainers[key]; old != nil {
			old.close()
			delete(o.drainers, key)
		}
		if old := o.sinks[key]; old != nil {
			_ = old.close()
			delete(o.sinks, key)
		}
		var d deliverer
		switch s := out.Sink.(type) {
		case *pb.JobOutput_Mqtt:
			topic := s.Mqtt.Topic
			if topic == "" {
				topic = "millstream/{job}/{output}"
			}
			d = &mqttSink{pub: o.pub, topic: topic, qos: byte(s.Mqtt.Qos), job: job.Name, output: out.Name, relay: &o.relay}
		case *pb.JobOutput_File:
			fs, err := newFileSink(prep[i].path, s.File.MaxBytes)
			if err != nil {
				return fmt.Errorf("actors: job %q output %q: %w", job.Name, out.Name, err)
			}
			fs.logger, fs.sync = o.warnLogger(), o.box.Durable()
			if fs.cut > 0 {
				o.warnLogger().Warn("file output ended in part of a row (the process died while writing it); cut off",
					"output", key, "path", s.File.Path, "bytes", fs.cut)
			}
			d = fs
		case *pb.JobOutput_Http:
			d = newHTTPSink(prep[i].http)
		case *pb.JobOutput_Log:
			prefix := s.Log.Prefix
			if prefix == "" {
				prefix = job.Name + "/" + out.Name
			}
			d = &logSink{o: o, prefix: prefix}
		default:
			continue
		}
		o.sinks[key] = d
		o.startDrainer(key, d, out.Delivery)
	}
	return nil
}

// sink returns an output's key and sink (nil when it has none).
func (o *Outputs) sink(job, output string) (string, deliverer) {
	key := strings.ToLower(job + "/" + output)
	o.mu.RLock()
	defer o.mu.RUnlock()
	return key, o.sinks[key]
}

// Before Close gives up on the rows of an in-memory outbox, a failing
// output gets closeTries more attempts, within closeWait in all.
const (
	closeTries = 2
	closeWait  = 10 * time.Second
)

// Close stops the drainers and closes every sink. A durable outbox keeps
// what was not sent; an in-memory one is delivered first, as far as its
// sinks take it (closeTries, closeWait), and the rows still in it are
// lost and counted in the error.
func (o *Outputs) Close() error {
	durable := o.box.Durable()
	if !durable {
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		_ = o.settle(ctx, closeTries)
		cancel()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	var lost int64
	for key, d := range o.drainers {
		d.close()
		if !durable {
			lost += o.box.Outbox(key).Entries
		}
	}
	for _, s := range o.sinks {
		errs = append(errs, s.close())
	}
	if o.system != nil {
		o.system.Shutdown()
		o.system = nil
	}
	if lost > 0 {
		errs = append(errs, fmt.Errorf("actors: %d output rows kept in memory could not be delivered before close", lost))
	}
	return errors.Join(errs...)
}

// logLines writes lines to the log writer, each with a line break.
func (o *Outputs) logLines(lines ...[]byte) {
	if o.log == nil {
		return
	}
	o.logMu.Lock()
	defer o.logMu.Unlock()
	for _, l := range lines {
		_, _ = o.log.Write(append(l, '\n'))
	}
}

// rowEntry is the outbox entry of a row: its JSON with a leading "_id".
func rowEntry(id string, rec *value.Record) *pb.OutboxEntry {
	bp := rowBufs.Get().(*[]byte)
	*bp = appendRowWithID((*bp)[:0], id, rec)
	e := &pb.OutboxEntry{Id: id, Payload: payloadOf(*bp)}
	rowBufs.Put(bp)
	return e
}

// rowBufs are where rows are encoded before they are copied out at
// their size: one allocation a row, not one per doubling.
var rowBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// payloadOf copies an encoded row, with room for the line break a file
// or log output adds when it writes it.
func payloadOf(b []byte) []byte {
	out := make([]byte, len(b), len(b)+1)
	copy(out, b)
	return out
}

// rowIDPlaceholder is the id rows are encoded with: a row is encoded in
// its job's actor, before its partition numbers it (jobactor.go), and
// setRowID puts the real id, of the same length, in its place.
const rowIDPlaceholder = "0000000000000000"

// setRowID gives an encoded row its id: the entry's, and in the payload
// where appendRowWithID put the placeholder.
func setRowID(e *pb.OutboxEntry, id string) {
	e.Id = id
	const at = len(`{"_id":"`)
	if len(e.Payload) >= at+len(rowIDPlaceholder) && string(e.Payload[:at]) == `{"_id":"` && string(e.Payload[at:at+len(rowIDPlaceholder)]) == rowIDPlaceholder {
		copy(e.Payload[at:], id)
	}
}

// appendRowWithID appends the row as JSON with a leading "_id" field.
func appendRowWithID(dst []byte, id string, rec *value.Record) []byte {
	dst = append(dst, `{"_id":"`...)
	dst = append(dst, id...)
	dst = append(dst, '"')
	body := len(dst)
	dst = value.AppendRecordJSON(dst, rec)
	if len(dst)-body == 2 { // an empty row
		return append(dst[:body], '}')
	}
	dst[body] = ','
	return dst
}

// FNV-1a, 64 bits, written out so that hashing allocates nothing.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvByte(h uint64, c byte) uint64 { return (h ^ uint64(c)) * fnvPrime }

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

// fnvUint64 hashes v's bytes, least significant first.
func fnvUint64(h, v uint64) uint64 {
	for k := 0; k < 8; k++ {
		h = fnvByte(h, byte(v>>(8*k)))
	}
	return h
}

// putHex16 writes h as 16 lower-case hex digits into dst[:16].
func putHex16(dst []byte, h uint64) {
	const hexd = "0123456789abcdef"
	for k := 15; k >= 0; k-- {
		dst[k] = hexd[h&0xf]
		h >>= 4
	}
}

// logSink prints rows: prefix, time, JSON.
type logSink struct {
	o      *Outputs
	prefix string
}

func (s *logSink) encode(_, _ string, ts int64, rec *value.Record, id string) *pb.OutboxEntry {
	bp := rowBufs.Get().(*[]byte)
	b := append(append((*bp)[:0], s.prefix...), ' ')
	b = append(append(b, value.FormatTicks(ts)...), ' ')
	*bp = value.AppendRecordJSON(b, rec)
	e := &pb.OutboxEntry{Id: id, Payload: payloadOf(*bp)}
	rowBufs.Put(bp)
	return e
}

func (s *logSink) deliver(_ context.Context, rows []*pb.OutboxEntry) (int, error) {
	lines := make([][]byte, len(rows))
	for i, r := range rows {
		lines[i] = r.Payload
	}
	s.o.logLines(lines...)
	return len(rows), nil
}

func (s *logSink) close() error { return nil }

// mqttSink publishes each row on its topic ({job}, {output} and {field}
// filled in when the row is encoded), and hands what it published to the
// relay (relay.go).
type mqttSink struct {
	pub   Publisher
	topic string
	qos   byte
	// job and output: the names the job declares; names: those the
	// rows' topics were made with (encode), which may differ in case.
	job, output string
	names       atomic.Pointer[[2]string]
	relay       *atomic.Pointer[relayLink] // Outputs.relay
}

func (s *mqttSink) encode(job, output string, _ int64, rec *value.Record, id string) *pb.OutboxEntry {
	if n := s.names.Load(); n == nil || n[0] != job || n[1] != output {
		s.names.Store(&[2]string{job, output})
	}
	e := rowEntry(id, rec)
	e.Topic = s.topicFor(job, output, rec)
	return e
}

func (s *mqttSink) topicFor(job, output string, rec *value.Record) string {
	topic := strings.NewReplacer("{job}", job, "{output}", output).Replace(s.topic)
	if strings.Contains(topic, "{") {
		for i, n := range rec.Names {
			topic = strings.ReplaceAll(topic, "{"+n+"}", strings.Trim(rec.Vals[i].String(), `"`))
		}
	}
	return topic
}

func (s *mqttSink) deliver(_ context.Context, rows []*pb.OutboxEntry) (int, error) {
	if s.pub == nil {
		return 0, fmt.Errorf("no MQTT publisher configured")
	}
	for i, r := range rows {
		if err := s.pub.Publish(r.Topic, r.Payload, s.qos); err != nil {
			s.relayRows(rows[:i])
			return i, err
		}
	}
	s.relayRows(rows)
	return len(rows), nil
}

func (s *mqttSink) close() error { return nil }

// fileSink appends JSON lines and rotates to path.1 at maxBytes. It only
// ever appends to, truncates or renames files it created itself: each one
// is recorded, by device and inode, in a hidden record next to it
// (.<name>.millstream) before it appears under its name, so a file that
// was there before, or that somebody else put there, is never touched.
type fileSink struct {
	mu       sync.Mutex
	path     string // resolved (DataRoots.OutputFile)
	maxBytes int64
	f        *os.File
	w        *bufio.Writer
	size     int64
	sync     bool            // fsync each delivery (the outbox is durable)
	recent   map[string]bool // ids at the end of the file when opened (resends after a crash)
	cut      int64           // bytes of a partial last row cut off when opened
	logger   *slog.Logger    // nil: slog.Default()
	noRotate bool            // a foreign path.1 blocks rotation (warned once)
}

func newFileSink(path string, maxBytes int64) (*fileSink, error) {
	if maxBytes <= 0 {
		maxBytes = 64 << 20
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("file output %s: %w", path, err)
	}
	s := &fileSink{path: path, maxBytes: maxBytes}
	return s, s.open()
}

// errForeignFile is returned for a file a file output did not create.
var errForeignFile = errors.New("exists and was not created by this gateway's file output; it is never appended to, truncated or rotated (move it away or choose another path)")

// ownRecord is the record of the files a file output created at path.
func ownRecord(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+ownRecordExt)
}

const (
	ownRecordExt    = ".millstream"
	ownRecordHeader = "# millstream file output: the files it created here (device inode); do not edit"
)

// readOwned reads the identities a file output recorded for path; none
// when there is no record. A record that is not one (say, a file
// output's JSON rows written under that name) owns nothing and is an
// error, so it can neither be forged nor overwritten.
func readOwned(path string) (map[fileID]bool, error) {
	own := map[fileID]bool{}
	data, err := os.ReadFile(ownRecord(path))
	if errors.Is(err, os.ErrNotExist) {
		return own, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if lines[0] != ownRecordHeader {
		return nil, fmt.Errorf("%s is not a millstream file output record", ownRecord(path))
	}
	for _, l := range lines[1:] {
		var id fileID
		if _, err := fmt.Sscanf(l, "%d %d", &id.dev, &id.ino); err != nil {
			return nil, fmt.Errorf("%s: line %q: %w", ownRecord(path), l, err)
		}
		own[id] = true
	}
	return own, nil
}

// writeOwned replaces the record with the given identities (synced, then
// renamed into place, so a crash leaves the old record or the new one).
func writeOwned(path string, ids []fileID) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+ownRecordExt+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone after the rename
	var b strings.Builder
	b.WriteString(ownRecordHeader + "\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d %d\n", id.dev, id.ino)
	}
	_, err = tmp.WriteString(b.String())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), ownRecord(path))
	}
	return err
}

// ownership says whether the file at p exists and whether this output
// created it. A symbolic link or anything but a regular file is never
// ours.
func ownership(p string, own map[fileID]bool) (exists, ours bool, id fileID, err error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, id, nil
	}
	if err != nil {
		return false, false, id, err
	}
	if !fi.Mode().IsRegular() {
		return true, false, id, nil
	}
	id, ok := identity(fi)
	if ok && own[id] {
		return true, true, id, nil
	}
	return true, ok && isOutputFile(p), id, nil
}

// isOutputFile reports whether a file holds nothing but file output rows
// (each line starts {"_id":"<16 hex digits>"; the last may be cut short):
// one written by a file output before outputs kept records, taken as its
// own. An empty file is not: anybody could have made it.
func isOutputFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	rows := 0
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long row: its start is what counts; skip the rest.
			if !isRowStart(line, true) {
				return false
			}
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			rows++
			continue
		}
		if len(line) > 0 && !isRowStart(line, err != nil) {
			return false
		}
		if err != nil {
			return err == io.EOF && rows+len(line) > 0
		}
		rows++
	}
}

// isRowStart reports whether line starts like a file output row; a
// partial line (the process died while writing it) may end early.
func isRowStart(line []byte, partial bool) bool {
	const prefix = `{"_id":"`
	n := len(prefix) + 16 + 1
	if len(line) < n {
		if !partial {
			return false
		}
		n = len(line)
	}
	for i := 0; i < n; i++ {
		c := line[i]
		switch {
		case i < len(prefix):
			if c != prefix[i] {
				return false
			}
		case i < len(prefix)+16:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		default:
			if c != '"' {
				return false
			}
		}
	}
	return true
}

// checkOwned refuses a file output path (and its rotated path.1) that
// exists but was not created by a file output.
func checkOwned(path string) error {
	if strings.HasSuffix(filepath.Base(path), ownRecordExt) {
		return fmt.Errorf("file output %s: names ending in %s are reserved for millstream's records", path, ownRecordExt)
	}
	own, err := readOwned(path)
	if err != nil {
		return fmt.Errorf("file output %s: %w", path, err)
	}
	for _, p := range []string{path, path + ".1"} {
		exists, ours, _, err := ownership(p, own)
		if err != nil {
			return fmt.Errorf("file output %s: %w", path, err)
		}
		if exists && !ours {
			return fmt.Errorf("file output: %s %w", p, errForeignFile)
		}
	}
	return nil
}

// create makes a new, empty file at s.path. It is created under a
// temporary name and recorded first, then linked into place (which fails
// if anything appeared there meanwhile): after a crash at any point, a
// file at s.path is one the record names.
func (s *fileSink) create(own map[fileID]bool) error {
	dir, base := filepath.Dir(s.path), filepath.Base(s.path)
	tmp, err := os.CreateTemp(dir, "."+base+".new-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	fi, err := tmp.Stat()
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Without an identity (off Unix) nothing is recorded, and the file is
	// known by its content only (isOutputFile).
	if id, ok := identity(fi); ok {
		if err := s.record(own, id); err != nil {
			return err
		}
	}
	if err := os.Link(tmpName, s.path); err != nil {
		return fmt.Errorf("create %s: %w", s.path, err)
	}
	return nil
}

// record writes the record of the file at s.path (id), keeping the
// rotated file's identity: that one is ours to replace next time.
func (s *fileSink) record(own map[fileID]bool, id fileID) error {
	ids := []fileID{id}
	if _, ours, old, err := ownership(s.path+".1", own); err == nil && ours {
		ids = append(ids, old)
	}
	if err := writeOwned(s.path, ids); err != nil {
		return fmt.Errorf("record of %s: %w", s.path, err)
	}
	return nil
}

// open opens the file for appending, creating it when absent. A last line
// without its newline is part of a row written when the process died: it
// is cut off, so the file stays one JSON row per line and the row's id is
// not taken as delivered (durable outputs write the row again from the
// outbox).
func (s *fileSink) open() error {
	own, err := readOwned(s.path)
	if err != nil {
		return fmt.Errorf("file output %s: %w", s.path, err)
	}
	exists, ours, id, err := ownership(s.path, own)
	switch {
	case err != nil:
		return fmt.Errorf("file output %s: %w", s.path, err)
	case exists && !ours:
		return fmt.Errorf("file output: %s %w", s.path, errForeignFile)
	case !exists:
		if err := s.create(own); err != nil {
			return fmt.Errorf("file output %s: %w", s.path, err)
		}
	case !own[id] && id != (fileID{}):
		// Written by a file output before outputs kept records: recorded
		// now, so it is not read through each time.
		if err := s.record(own, id); err != nil {
			return fmt.Errorf("file output %s: %w", s.path, err)
		}
		s.log().Info("file output: existing file of file output rows taken over", "path", s.path)
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("file output %s: %w", s.path, err)
	}
	st, err := f.Stat()
	if err == nil && exists {
		// The file checked is the one opened, not one swapped in since.
		if got, ok := identity(st); ok && got != id {
			err = fmt.Errorf("%s %w", s.path, errForeignFile)
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("file output %s: %w", s.path, err)
	}
	size := st.Size()
	whole, err := completeLines(f, size)
	if err == nil && whole < size {
		if err = f.Truncate(whole); err == nil {
			s.cut += size - whole
			size = whole
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("file output %s: %w", s.path, err)
	}
	s.f, s.w, s.size = f, bufio.NewWriterSize(f, 64<<10), size
	return nil
}

// completeLines returns the length of f's first size bytes up to and
// including the last newline.
func completeLines(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// appendLine writes one line, rotating first when it would pass maxBytes
// (s.mu held).
func (s *fileSink) appendLine(line []byte) error {
	if s.size+int64(len(line)) > s.maxBytes && s.size > 0 {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.w.Write(line)
	s.size += int64(n)
	return err
}

// rotate renames the file to path.1, replacing the previous path.1 only
// if this output created it; a foreign path.1 stops rotation (warned
// once) and the file grows past max_bytes instead.
func (s *fileSink) rotate() error {
	if s.noRotate {
		return nil
	}
	own, err := readOwned(s.path)
	if err != nil {
		return fmt.Errorf("file output %s: %w", s.path, err)
	}
	if exists, ours, _, err := ownership(s.path+".1", own); err != nil || (exists && !ours) {
		s.noRotate = true
		s.log().Warn("file output not rotated: the rotated file's name is taken by a file it did not create; the file grows past max_bytes",
			"path", s.path, "rotated", s.path+".1", "error", err)
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		return err
	}
	return s.open()
}

func (s *fileSink) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.w.Flush()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}

func (s *fileSink) encode(_, _ string, _ int64, rec *value.Record, id string) *pb.OutboxEntry {
	return rowEntry(id, rec)
}

// deliver appends the rows and, from a durable outbox, syncs the file
// before they leave it. After a crash between the two, the rows come
// again: the ids at the end of the file (read once, at start) drop those
// resends.
func (s *fileSink) deliver(_ context.Context, rows []*pb.OutboxEntry) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, fmt.Errorf("file output %s is closed", s.path)
	}
	if s.recent == nil {
		s.recent = tailIDs(s.path, 4<<20)
		s.log().Info("file output opened; rows sent again after a crash are skipped if among those at its end",
			"path", s.path, "bytes", s.size, "rows_at_end", len(s.recent))
	}
	skipped := 0
	for _, r := range rows {
		if s.recent[r.Id] {
			skipped++
			continue
		}
		if err := s.appendLine(append(r.Payload, '\n')); err != nil {
			return 0, err
		}
	}
	if err := s.w.Flush(); err != nil {
		return 0, err
	}
	if s.sync {
		if err := s.f.Sync(); err != nil {
			return 0, err
		}
	}
	if skipped > 0 {
		s.log().Info("file output: rows already in the file skipped (sent again after a crash)", "path", s.path, "rows", skipped)
	}
	return len(rows), nil
}

func (s *fileSink) log() *slog.Logger {
	if s.logger != nil {
		return s.logger
	}
	return slog.Default()
}

// tailIDs reads the "_id"s of the rows in the last max bytes of a file.
func tailIDs(path string, max int64) map[string]bool {
	ids := map[string]bool{}
	f, err := os.Open(path)
	if err != nil {
		return ids
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte(`{"_id":"`)); ok && len(rest) >= 16 {
			ids[string(rest[:16])] = true
		}
	}
	return ids
}

// DataRoots are the directories a job's files must lie in: file outputs,
// reference files and "file:" header values. A path is resolved before it
// is checked (made absolute, cleaned, and the symbolic links of its
// existing part followed), so neither ".." nor a link leads out. Files the
// gateway's own configuration names are allowed as well, exactly: the
// operator who wrote them could as well have listed their directories.
// A nil *DataRoots allows everything (tests, embedding).
type DataRoots struct {
	dirs  []string        // resolved
	exact map[string]bool // resolved files allowed outside dirs
}

// NewDataRoots resolves dirs (relative ones against the working
// directory) and the extra files allowed outside them.
func NewDataRoots(dirs, files []string) (*DataRoots, error) {
	r := &DataRoots{exact: map[string]bool{}}
	for _, d := range dirs {
		if d == "" {
			return nil, errors.New("data_roots: an empty directory name")
		}
		p, err := resolvePath(d)
		if err != nil {
			return nil, fmt.Errorf("data_roots: %s: %w", d, err)
		}
		r.dirs = append(r.dirs, p)
	}
	for _, f := range files {
		p, err := resolvePath(f)
		if err != nil {
			return nil, fmt.Errorf("data_roots: %s: %w", f, err)
		}
		r.exact[p] = true
	}
	return r, nil
}

// Dirs are the resolved root directories.
func (r *DataRoots) Dirs() []string { return slices.Clone(r.dirs) }

// resolvePath makes p absolute and follows the symbolic links of its
// longest existing prefix; the rest, which does not exist yet, is kept as
// it is (Abs has cleaned it, so it holds no "..").
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// allows reports whether the resolved path p is strictly inside a root or
// one of the exact files.
func (r *DataRoots) allows(p string) bool {
	if r.exact[p] {
		return true
	}
	for _, d := range r.dirs {
		rel, err := filepath.Rel(d, p)
		if err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}

func (r *DataRoots) refuse(what, path, resolved string) error {
	shown := path
	if resolved != filepath.Clean(path) {
		shown = fmt.Sprintf("%s (resolved: %s)", path, resolved)
	}
	return fmt.Errorf("%w: %s %s is outside the data roots %s (gateway data_roots; default: data_dir)", ErrBadRequest, what, shown, strings.Join(r.dirs, ", "))
}

// OutputFile resolves a file output's path and checks it lies under a
// root. The file itself may not exist yet; if it does, it must not be a
// symbolic link.
func (r *DataRoots) OutputFile(path string) (string, error) {
	p, err := resolvePath(path)
	if err != nil {
		return "", fmt.Errorf("file output %s: %w", path, err)
	}
	// resolvePath followed a link at the file's own name; refuse it rather
	// than write where it points.
	abs, _ := filepath.Abs(path)
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return "", fmt.Errorf("%w: file output %s is a symbolic link", ErrBadRequest, path)
	}
	if r != nil && !r.allows(p) {
		return "", r.refuse("file output", path, p)
	}
	return p, nil
}

// ReferenceFile resolves a file a job reads (reference data, a "file:"
// header value) and checks it lies under a root.
func (r *DataRoots) ReferenceFile(path string) (string, error) {
	p, err := resolvePath(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if r != nil && !r.allows(p) {
		return "", r.refuse("file", path, p)
	}
	return p, nil
}
