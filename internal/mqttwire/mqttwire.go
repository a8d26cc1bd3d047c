// Package mqttwire encodes the few MQTT 3.1.1 packets that Millstream's own
// publishers write by hand (the load generator, the fault tests' publisher):
// CONNECT, PUBLISH and the remaining-length field, and reads packets back.
// Anything more belongs to an MQTT library.
package mqttwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

// AppendRemaining appends n as MQTT's variable-length "remaining length".
func AppendRemaining(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// Connect is a CONNECT packet: protocol level 4, clean session, the given
// keep-alive in seconds (0: none).
func Connect(clientID string, keepAlive uint16) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02}
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	return append(AppendRemaining([]byte{0x10}, len(body)), body...)
}

// ConnackOK reports whether a 4-byte CONNACK accepts the connection.
func ConnackOK(ack []byte) bool { return len(ack) == 4 && ack[0] == 0x20 && ack[3] == 0 }

// AppendPublish appends a PUBLISH packet; with QoS 1 its packet id is id,
// at offset idAt of the returned slice (to be set again per send).
func AppendPublish(b []byte, topic string, payload []byte, qos byte, id uint16) (pkt []byte, idAt int) {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	b = AppendRemaining(append(b, 0x30|qos<<1), n)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	idAt = len(b)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return append(b, payload...), idAt
}

// ReadPacket reads one packet: its first byte and its body.
func ReadPacket(r *bufio.Reader) (header byte, body []byte, err error) {
	if header, err = r.ReadByte(); err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, errors.New("mqttwire: malformed remaining length")
		}
		c, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(c&0x7f) * mult
		if c&0x80 == 0 {
			break
		}
		mult *= 128
	}
	body = make([]byte, n)
	_, err = io.ReadFull(r, body)
	return header, body, err
}
