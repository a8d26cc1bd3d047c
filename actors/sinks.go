package actors

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
	"github.com/millstream/millstream/state"
)

// Publisher publishes an MQTT message (the embedded broker, or a client
// of an external one).
type Publisher interface {
	Publish(topic string, payload []byte, qos byte) error
}

// Outputs routes output rows to the sinks each job declares: MQTT, a
// JSON-lines file with size-based rotation, or a log writer. Every MQTT and
// file message carries "_id", a stable id from the job, output, time and
// row, so receivers can drop duplicates. Safe for concurrent use.
type Outputs struct {
	mu    sync.RWMutex          // guards sinks, pub, drainers; read on every row
	sinks map[string]outputSink // job/output (lower case)
	pub   Publisher
	log   io.Writer
	logMu sync.Mutex

	// Durable mode (outbox.go).
	store    *state.Store
	logger   *slog.Logger
	drainers map[string]*drainer
	full     atomic.Int32 // outputs over quota with policy "reject"
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
}

type outputSink interface {
	write(job, output string, ts int64, rec *value.Record) error
	close() error
}

// warnLogger is where problems with outputs are logged: the durable
// mode's logger, else the default one.
func (o *Outputs) warnLogger() *slog.Logger {
	if o.logger != nil {
		return o.logger
	}
	return slog.Default()
}

// NewOutputs makes an Outputs that publishes through pub and logs to log.
func NewOutputs(pub Publisher, log io.Writer) *Outputs {
	return &Outputs{sinks: map[string]outputSink{}, pub: pub, log: log}
}

// SetPublisher sets where MQTT outputs go (before the first Configure).
func (o *Outputs) SetPublisher(pub Publisher) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pub = pub
}

// Configure (re)creates the sinks of a job.
func (o *Outputs) Configure(job *pb.Job) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, out := range job.Outputs {
		key := strings.ToLower(job.Name + "/" + out.Name)
		if old := o.sinks[key]; old != nil {
			_ = old.close()
		}
		switch s := out.Sink.(type) {
		case *pb.JobOutput_Mqtt:
			topic := s.Mqtt.Topic
			if topic == "" {
				topic = "millstream/{job}/{output}"
			}
			o.sinks[key] = &mqttSink{pub: o.pub, topic: topic, qos: byte(s.Mqtt.Qos)}
		case *pb.JobOutput_File:
			fs, err := newFileSink(s.File.Path, s.File.MaxBytes)
			if err != nil {
				return fmt.Errorf("actors: job %q output %q: %w", job.Name, out.Name, err)
			}
			fs.logger = o.warnLogger()
			if fs.cut > 0 {
				o.warnLogger().Warn("file output ended in part of a row (the process died while writing it); cut off",
					"output", key, "path", s.File.Path, "bytes", fs.cut)
			}
			o.sinks[key] = fs
		case *pb.JobOutput_Http:
			if s.Http.Url == "" {
				return fmt.Errorf("actors: job %q output %q: http sink needs a url", job.Name, out.Name)
			}
			if o.store != nil {
				o.sinks[key] = newHTTPPoster(s.Http)
			} else {
				o.sinks[key] = newHTTPSink(s.Http)
			}
		case *pb.JobOutput_Log:
			prefix := s.Log.Prefix
			if prefix == "" {
				prefix = job.Name + "/" + out.Name
			}
			o.sinks[key] = &logSink{o: o, prefix: prefix}
		}
		if o.store != nil {
			if d, ok := o.sinks[key].(deliverer); ok {
				o.startDrainer(key, d, out.Delivery)
			}
		}
	}
	return nil
}

// sink returns an output's key and sink (nil when it has none).
func (o *Outputs) sink(job, output string) (string, outputSink) {
	key := strings.ToLower(job + "/" + output)
	o.mu.RLock()
	defer o.mu.RUnlock()
	return key, o.sinks[key]
}

// Write implements Sink.
func (o *Outputs) Write(job, output string, ts int64, rec *value.Record) {
	_, s := o.sink(job, output)
	if s == nil {
		return
	}
	if err := s.write(job, output, ts, rec); err != nil {
		o.logLine(fmt.Sprintf("millstream: output %s/%s: %v", job, output, err))
	}
}

// Close stops the drainers (what they have not sent stays in the outbox)
// and closes every sink.
func (o *Outputs) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, d := range o.drainers {
		d.close()
	}
	var first error
	for _, s := range o.sinks {
		if err := s.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (o *Outputs) logLine(line string) {
	if o.log == nil {
		return
	}
	o.logMu.Lock()
	defer o.logMu.Unlock()
	fmt.Fprintln(o.log, line)
}

// appendWithID appends the row as JSON with a leading "_id" field: the FNV-1a
// hash of job, output, time and the row's JSON, stable for the same row of
// the same window, so receivers can drop duplicates. It writes the row once,
// in place, and allocates nothing when dst has room.
func appendWithID(dst []byte, job, output string, ts int64, rec *value.Record) []byte {
	start := len(dst)
	dst = appendRowWithID(dst, "0000000000000000", rec)
	h := fnvString(fnvOffset, job)
	h = fnvByte(h, 0)
	h = fnvString(h, output)
	h = fnvByte(h, 0)
	h = fnvUint64(h, uint64(ts))
	for _, c := range dst[start+len(`{"_id":"0000000000000000"`):] {
		h = fnvByte(h, c)
	}
	putHex16(dst[start+len(`{"_id":"`):], h)
	return dst
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

func withID(job, output string, ts int64, rec *value.Record) []byte {
	return appendWithID(nil, job, output, ts, rec)
}

type logSink struct {
	o      *Outputs
	prefix string
}

func (s *logSink) write(_, _ string, ts int64, rec *value.Record) error {
	s.o.logLine(s.format(ts, rec))
	return nil
}

// format is a row as the log prints it: prefix, time, JSON.
func (s *logSink) format(ts int64, rec *value.Record) string {
	return s.prefix + " " + value.FormatTicks(ts) + " " + string(value.AppendRecordJSON(nil, rec))
}

func (s *logSink) close() error { return nil }

type mqttSink struct {
	pub   Publisher
	topic string
	qos   byte
}

func (s *mqttSink) write(job, output string, ts int64, rec *value.Record) error {
	if s.pub == nil {
		return fmt.Errorf("no MQTT publisher configured")
	}
	return s.pub.Publish(s.topicFor(job, output, rec), withID(job, output, ts, rec), s.qos)
}

func (s *mqttSink) close() error { return nil }

// fileSink appends JSON lines and rotates to path.1 at maxBytes.
type fileSink struct {
	mu       sync.Mutex
	path     string
	maxBytes int64
	f        *os.File
	w        *bufio.Writer
	size     int64
	line     []byte          // reused encoding buffer
	recent   map[string]bool // durable mode: ids already in the file (resends after a crash)
	cut      int64           // bytes of a partial last row cut off when opened
	logger   *slog.Logger    // nil: slog.Default()
}

func newFileSink(path string, maxBytes int64) (*fileSink, error) {
	if maxBytes <= 0 {
		maxBytes = 64 << 20
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	s := &fileSink{path: path, maxBytes: maxBytes}
	return s, s.open()
}

// open opens the file for appending. A last line without its newline is
// part of a row written when the process died: it is cut off, so the file
// stays one JSON row per line and the row's id is not taken as delivered
// (durable outputs write the row again from the outbox).
func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
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

func (s *fileSink) write(job, output string, ts int64, rec *value.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.line = append(appendWithID(s.line[:0], job, output, ts, rec), '\n')
	return s.appendLine(s.line)
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

func (s *fileSink) rotate() error {
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
