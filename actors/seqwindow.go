package actors

import "encoding/binary"

// seqWindowSize is how far below a device's highest sequence number the
// gateway can tell a resend from a late event it has not seen: input parked
// on a gateway cut off from the cluster (or held by a dead one until it
// restarts) reaches its partition after newer input of the same device that
// went through another gateway.
const seqWindowSize = 1024

// seqWindow records which of the seqWindowSize sequence numbers at and
// below the highest one seen were seen: bit a of the window is seq
// highest-a. A device whose last seqWindowSize numbers all arrived needs
// none (nil means all of them were seen), so a device that publishes in
// order pays for one only during its first seqWindowSize messages.
type seqWindow [seqWindowSize / 64]uint64

// seqVerdict is what the window says of one sequence number.
type seqVerdict uint8

const (
	// seqNew: not seen before; taken and recorded.
	seqNew seqVerdict = iota
	// seqDuplicate: seen before (a QoS 1 resend); dropped and counted.
	seqDuplicate
	// seqUnverified: seqWindowSize or more below the highest number, so
	// the window cannot say whether it was seen. Taken (never dropped: it
	// may be input that was held up) and counted.
	seqUnverified
)

// seqAccept judges seq for a device input whose highest number so far is
// last (seen: whether there is one) and whose window is w. It returns the
// verdict, the new highest number, and the window to keep. It never calls
// a number it has not seen a duplicate.
func seqAccept(seq, last uint64, seen bool, w *seqWindow) (v seqVerdict, highest uint64, win *seqWindow) {
	switch {
	case !seen:
		// Nothing below the first number was seen: an earlier one that
		// arrives late is new, not a duplicate.
		w = &seqWindow{}
		w[0] = 1
		return seqNew, seq, w
	case seq > last:
		if w == nil && seq == last+1 {
			return seqNew, seq, nil // in order: no gap
		}
		if w == nil {
			w = allSeen()
		}
		w.shift(seq - last)
		w[0] |= 1
		return seqNew, seq, w.orNil()
	}
	age := last - seq
	switch {
	case age >= seqWindowSize:
		return seqUnverified, last, w
	case w == nil || w.has(age):
		return seqDuplicate, last, w
	}
	w.set(age)
	return seqNew, last, w.orNil()
}

func allSeen() *seqWindow {
	w := &seqWindow{}
	for i := range w {
		w[i] = ^uint64(0)
	}
	return w
}

func (w *seqWindow) has(age uint64) bool { return w[age/64]&(1<<(age%64)) != 0 }
func (w *seqWindow) set(age uint64)      { w[age/64] |= 1 << (age % 64) }

// shift ages every bit by k (a higher number arrived); the new ages 0..k-1
// start unseen.
func (w *seqWindow) shift(k uint64) {
	if k >= seqWindowSize {
		*w = seqWindow{}
		return
	}
	words, bits := int(k/64), k%64
	for i := len(w) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w[j] << bits
			if bits > 0 && j > 0 {
				v |= w[j-1] >> (64 - bits)
			}
		}
		w[i] = v
	}
}

// orNil is nil once every number in the window was seen.
func (w *seqWindow) orNil() *seqWindow {
	for _, v := range w {
		if v != ^uint64(0) {
			return w
		}
	}
	return nil
}

func (w *seqWindow) bytes() []byte {
	b := make([]byte, 0, len(w)*8)
	for _, v := range w {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// seqWindowOf decodes a checkpointed window (nil when absent or damaged:
// the seqWindowSize numbers below the highest count as seen).
func seqWindowOf(b []byte) *seqWindow {
	w := &seqWindow{}
	if len(b) != len(w)*8 {
		return nil
	}
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return w
}
