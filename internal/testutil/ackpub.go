package testutil

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/millstream/millstream/internal/mqttwire"
)

// AckPublisher is one device's MQTT 3.1.1 connection as a fault test needs
// it: QoS 1 with up to Window messages in flight, and an exact record of
// which messages a PUBACK acknowledged (paho completes a token without an
// error when the connection drops, so it cannot say). A message without a
// PUBACK is sent again, in order, on a new connection to the next broker,
// tried the moment its port answers: the publisher of an operator's bad
// day, neutral about what the gateway does.
type AckPublisher struct {
	ClientID string
	Topic    string
	Brokers  []string
	// Window: messages in flight (default 20). AckTimeout: a connection
	// that acknowledges nothing for this long is dropped (default 5 s).
	Window     int
	AckTimeout time.Duration

	next    int // broker to try next
	acked   []bool
	resends atomic.Int64
	conns   atomic.Int64
}

// Acked reports which of the messages of the last Run got a PUBACK.
func (p *AckPublisher) Acked() []bool { return p.acked }

// Resends counts messages sent again; Connections counts connections made.
func (p *AckPublisher) Resends() int64     { return p.resends.Load() }
func (p *AckPublisher) Connections() int64 { return p.conns.Load() }

// Run publishes msgs in order; message i is first sent once may(i) is true
// (polled). It returns once every message is acknowledged, or with an
// error at the deadline or when stop is closed.
func (p *AckPublisher) Run(msgs [][]byte, may func(i int) bool, deadline time.Time, stop <-chan struct{}) error {
	window, ackTimeout := p.Window, p.AckTimeout
	if window <= 0 {
		window = 20
	}
	if ackTimeout <= 0 {
		ackTimeout = 5 * time.Second
	}
	p.acked = make([]bool, len(msgs))
	var (
		c        *ackConn
		pending  []int          // sent on c (or before), not acknowledged, in order
		byID     map[uint16]int // packet id on c -> message
		pid      uint16
		next     int // next message never sent
		progress time.Time
		unacked  int
	)
	drop := func() {
		if c != nil {
			c.close()
			c = nil
		}
	}
	defer drop()
	send := func(i int) error {
		pid++
		if pid == 0 {
			pid = 1
		}
		byID[pid] = i
		return c.publish(p.Topic, pid, msgs[i])
	}
	for next < len(msgs) || unacked > 0 {
		select {
		case <-stop:
			return errors.New("stopped")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d messages unacknowledged at the deadline (%d never sent)", p.ClientID, unacked+len(msgs)-next, len(msgs), len(msgs)-next)
		}
		if c == nil {
			addr := p.Brokers[p.next%len(p.Brokers)]
			p.next++
			nc, err := dialAck(addr, p.ClientID)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			p.conns.Add(1)
			c, byID, pid, progress = nc, map[uint16]int{}, 0, time.Now()
			var err2 error
			for _, i := range pending {
				p.resends.Add(1)
				if err2 = send(i); err2 != nil {
					break
				}
			}
			if err2 != nil {
				drop()
			}
			continue
		}
		if next < len(msgs) && len(pending) < window && may(next) {
			pending = append(pending, next)
			unacked++
			next++
			if err := send(next - 1); err != nil {
				drop()
			}
			continue
		}
		wait := 5 * time.Millisecond
		if next >= len(msgs) || len(pending) >= window {
			wait = 50 * time.Millisecond
		}
		select {
		case id := <-c.acks:
			i, ok := byID[id]
			if !ok || p.acked[i] {
				continue
			}
			delete(byID, id)
			p.acked[i] = true
			unacked--
			progress = time.Now()
			for k, j := range pending {
				if j == i {
					pending = append(pending[:k], pending[k+1:]...)
					break
				}
			}
		case <-c.dead:
			drop()
		case <-time.After(wait):
			if len(pending) > 0 && time.Since(progress) > ackTimeout {
				drop()
			}
		}
	}
	return nil
}

// ackConn is one MQTT 3.1.1 connection: CONNECT, QoS 1 PUBLISH, and a
// reader that passes on the PUBACKs.
type ackConn struct {
	c    net.Conn
	w    *bufio.Writer
	acks chan uint16
	dead chan struct{}
	buf  []byte // the PUBLISH being written
}

func dialAck(addr, clientID string) (*ackConn, error) {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	// CONNECT: clean session, no keep-alive (the fault tests have quiet
	// periods longer than any keep-alive).
	pkt := mqttwire.Connect(clientID, 0)
	_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := nc.Write(pkt); err != nil {
		nc.Close()
		return nil, err
	}
	r := bufio.NewReader(nc)
	var ack [4]byte
	if _, err := io.ReadFull(r, ack[:]); err != nil {
		nc.Close()
		return nil, fmt.Errorf("CONNACK: %w", err)
	}
	if !mqttwire.ConnackOK(ack[:]) {
		nc.Close()
		return nil, fmt.Errorf("connection refused: CONNACK % x", ack)
	}
	_ = nc.SetDeadline(time.Time{})
	c := &ackConn{c: nc, w: bufio.NewWriter(nc), acks: make(chan uint16, 1<<16), dead: make(chan struct{})}
	go c.read(r)
	return c, nil
}

func (c *ackConn) read(r *bufio.Reader) {
	defer close(c.dead)
	for {
		h, body, err := mqttwire.ReadPacket(r)
		if err != nil {
			return
		}
		if h>>4 == 4 && len(body) >= 2 { // PUBACK
			select {
			case c.acks <- binary.BigEndian.Uint16(body):
			default:
				return // nobody reads: the connection is being dropped
			}
		}
	}
}

func (c *ackConn) publish(topic string, id uint16, payload []byte) error {
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.buf, _ = mqttwire.AppendPublish(c.buf[:0], topic, payload, 1, id)
	if _, err := c.w.Write(c.buf); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *ackConn) close() {
	c.c.Close()
	<-c.dead
}
