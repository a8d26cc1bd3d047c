package actors

import (
	"math"
	"time"

	"github.com/millstream/millstream/operators/value"
)

// Quiet partitions (issue 18: an idle gateway costs next to nothing).
//
// Every second the gateway ticks each partition: its jobs' clocks advance,
// silent devices go offline, and, durable, the tick is logged so a replay
// sees it where the partition did (D2). A partition with nothing that
// time can change (no job state, no rows or forwards waiting, checkpointed
// since its last event) and no device due to go offline or to be
// passivated before a known time has nothing to tick for: it says until
// when it is quiet, and the gateway neither ticks it nor sends it the
// checkpoint timer's message until then, or until an event arrives. The
// ticks it skips are not logged, so a replay skips them too.

// noteQuiet, after a tick, records until when the partition is quiet (in
// arrival ticks; 0: not quiet).
func (p *partition) noteQuiet() {
	until := p.quietUntil()
	if p.g.quietUntil[p.id].Load() != until {
		p.g.quietUntil[p.id].Store(until)
	}
}

func (p *partition) quietUntil() int64 {
	if !p.active || len(p.outBuf) > 0 || len(p.forwardBuf) > 0 || p.g.store != nil && p.sinceCp > 0 {
		return 0
	}
	for _, size := range p.syncJobs(true) {
		if size != 0 { // -1: not known, so not quiet
			return 0
		}
	}
	until := int64(math.MaxInt64)
	silence := int64(p.g.cfg.DeviceSilence / 100)
	passivate := int64(p.g.cfg.PassivateAfter / 100)
	if len(p.idleDeviceActors()) > 0 {
		return 0 // to be passivated at the next sweep
	}
	for _, d := range p.devices {
		if d.online {
			until = min(until, d.lastSeen+silence)
		} else {
			until = min(until, d.lastSeen+passivate)
		}
	}
	return until
}

// awake ends the partition's quiet: an event came, or its state changed.
// The gateway's clock actor, asleep while every partition is quiet, wakes.
func (p *partition) awake() {
	if p.g.quietUntil[p.id].Load() != 0 {
		p.g.quietUntil[p.id].Store(0)
		p.g.wakeClock()
	}
}

// allQuiet reports whether every partition is quiet now, and for how long
// the first of them stays so.
func (g *Gateway) allQuiet() (time.Duration, bool) {
	now := value.FromTime(g.cfg.Now())
	first := int64(math.MaxInt64)
	for i := range g.quietUntil {
		u := g.quietUntil[i].Load()
		if u == 0 || now >= u {
			return 0, false
		}
		first = min(first, u)
	}
	// Arrival ticks are 100 ns.
	return time.Duration(min(first-now, int64(maxQuietSleep/100)) * 100), true
}

// maxQuietSleep bounds one sleep of the clock actor while every partition is
// quiet (a partition quiet for good, no device in it, says so with no end).
const maxQuietSleep = time.Hour

// quiet reports whether partition i needs no tick at now.
func (g *Gateway) quiet(i int, now int64) bool {
	u := g.quietUntil[i].Load()
	return u != 0 && now < u
}
