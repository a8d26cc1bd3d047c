package sim

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/millstream/millstream/internal/mqttwire"
)

// rawPublisher is a minimal MQTT 3.1.1 publisher for the load generator: it
// writes pre-encoded PUBLISH packets into a buffered connection and, for
// QoS 1, keeps up to window messages in flight, counting PUBACKs on a
// reader goroutine. paho's general-purpose publish path tops out far below
// what one connection can carry; this one does only what loading needs.
type rawPublisher struct {
	conn   net.Conn
	w      *bufio.Writer
	qos    byte
	slots  chan struct{}
	acked  atomic.Uint64
	nextID uint16
	done   chan error
}

const window = 1024

func dialRaw(broker, clientID string, qos byte) (*rawPublisher, error) {
	u, err := url.Parse(broker)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("sim: broker URL %q: want tcp://host:port", broker)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("sim: dial %s: %w", u.Host, err)
	}
	p := &rawPublisher{conn: conn, w: bufio.NewWriterSize(conn, 64<<10), qos: qos, slots: make(chan struct{}, window), done: make(chan error, 1)}
	// CONNECT: clean session, keep-alive 60 s.
	if _, err := conn.Write(mqttwire.Connect(clientID, 60)); err != nil {
		conn.Close()
		return nil, err
	}
	ack := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil || !mqttwire.ConnackOK(ack) {
		conn.Close()
		return nil, fmt.Errorf("sim: CONNECT refused by %s (%v %v)", u.Host, ack, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go p.readAcks()
	return p, nil
}

// encodePublish builds a PUBLISH packet; for QoS 1 the packet id sits at
// the returned offset and is filled in per send.
func encodePublish(topic string, payload []byte, qos byte) (pkt []byte, idAt int) {
	return mqttwire.AppendPublish(nil, topic, payload, qos, 0)
}

func (p *rawPublisher) publish(pkt []byte, idAt int) error {
	if p.qos > 0 {
		p.slots <- struct{}{}
		p.nextID++
		if p.nextID == 0 {
			p.nextID = 1
		}
		binary.BigEndian.PutUint16(pkt[idAt:], p.nextID)
		if len(p.slots) == cap(p.slots) {
			if err := p.w.Flush(); err != nil { // let acks flow
				return err
			}
		}
	}
	_, err := p.w.Write(pkt)
	return err
}

func (p *rawPublisher) readAcks() {
	r := bufio.NewReader(p.conn)
	hdr := make([]byte, 4)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			p.done <- err
			return
		}
		if hdr[0] == 0x40 {
			p.acked.Add(1)
			<-p.slots
		}
	}
}

// close flushes, waits for outstanding acks (QoS 1) and disconnects.
func (p *rawPublisher) close(ctx context.Context) error {
	err := p.w.Flush()
	for p.qos > 0 && len(p.slots) > 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	_, _ = p.conn.Write([]byte{0xE0, 0}) // DISCONNECT
	p.conn.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// runLoad publishes prebuilt payloads from cfg.Connections raw connections
// as fast as the broker takes them until ctx ends.
func runLoad(ctx context.Context, cfg Config, sent, errs *atomic.Uint64) error {
	pubs := make([]*rawPublisher, cfg.Connections)
	for i := range pubs {
		p, err := dialRaw(cfg.Broker, fmt.Sprintf("millstream-load-%d-%d", cfg.Seed, i), cfg.QoS)
		if err != nil {
			return err
		}
		pubs[i] = p
	}
	done := make(chan struct{})
	for i, p := range pubs {
		go func(i int, p *rawPublisher) {
			defer func() { done <- struct{}{} }()
			var pkts [][]byte
			var ids []int
			for d := i; d < cfg.Devices; d += cfg.Connections {
				id := fmt.Sprintf("machine-%04d", d)
				payload := fmt.Appendf(nil, `{"deviceId":"%s","sensorId":"s1","temperature":%.2f,"humidity":%.1f,"pressure":%.1f,"vibration":0.021}`,
					id, 60+float64(d%45), 40+float64(d%7), 1013+float64(d%5))
				pkt, at := encodePublish("devices/"+id+"/messages/events/", payload, cfg.QoS)
				pkts, ids = append(pkts, pkt), append(ids, at)
			}
			var local uint64
			for n := 0; ctx.Err() == nil; n++ {
				k := n % len(pkts)
				if err := p.publish(pkts[k], ids[k]); err != nil {
					errs.Add(1)
					return
				}
				local++
				if local%256 == 0 {
					sent.Add(256)
				}
			}
			sent.Add(local % 256)
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.close(cctx); err != nil {
				errs.Add(1)
			}
		}(i, p)
	}
	for range pubs {
		<-done
	}
	return nil
}
