package mqttwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPacketsReadBack: what AppendPublish and Connect write, ReadPacket
// reads back, across the remaining-length field's one- to four-byte forms.
func TestPacketsReadBack(t *testing.T) {
	for _, size := range []int{0, 100, 127, 128, 16383, 16384, 2_097_151, 2_097_152} {
		payload := []byte(strings.Repeat("x", size))
		pkt, idAt := AppendPublish(nil, "devices/d1/messages/events", payload, 1, 513)
		require.Equal(t, uint16(513), binary.BigEndian.Uint16(pkt[idAt:]))
		h, body, err := ReadPacket(bufio.NewReader(bytes.NewReader(pkt)))
		require.NoError(t, err, "size %d", size)
		require.Equal(t, byte(0x32), h)
		require.Equal(t, 2+len("devices/d1/messages/events")+2+size, len(body))
		require.True(t, bytes.HasSuffix(body, payload))
	}
	h, body, err := ReadPacket(bufio.NewReader(bytes.NewReader(Connect("press-01", 60))))
	require.NoError(t, err)
	require.Equal(t, byte(0x10), h)
	require.True(t, bytes.HasSuffix(body, []byte("press-01")))
	_, _, err = ReadPacket(bufio.NewReader(bytes.NewReader([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01})))
	require.Error(t, err, "a remaining length of five bytes")
	require.True(t, ConnackOK([]byte{0x20, 2, 0, 0}))
	require.False(t, ConnackOK([]byte{0x20, 2, 0, 3}), "server unavailable")
}
