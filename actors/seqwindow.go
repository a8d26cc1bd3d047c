package actors

import "encoding/binary"

// seqWindowSize is how far below a device's highest sequence number an
// event may arrive late and still be told apart from a duplicate: input
// parked on a gateway cut off from the cluster (or held by a dead one
// until it restarts) reaches its partition after newer input of the same
// device that went through another gateway.
const seqWindowSize = 1024

// seqWindow records which of the seqWindowSize sequence numbers at and
// below the highest one seen were seen: bit a of the window is seq
// highest-a. A device whose numbers all arrived in order needs none (nil
// means every number below the highest was seen), so only devices with
// gaps pay for one.
type seqWindow [seqWindowSize / 64]uint64

// seqAccept records seq for a device input whose highest number so far is
// last (seen: whether there is one) and whose window is w. It returns
// whether seq is new, the new highest number, and the window to keep.
func seqAccept(seq, last uint64, seen bool, w *seqWindow) (fresh bool, highest uint64, win *seqWindow) {
	switch {
	case !seen:
		return true, seq, nil
	case seq > last:
		if w == nil && seq == last+1 {
			return true, seq, nil // in order: no gap
		}
		if w == nil {
			w = allSeen()
		}
		w.shift(seq - last)
		w[0] |= 1
		return true, seq, w.orNil()
	}
	age := last - seq
	if w == nil || age >= seqWindowSize || w.has(age) {
		return false, last, w
	}
	w.set(age)
	return true, last, w.orNil()
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
// every number below the highest counts as seen).
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
