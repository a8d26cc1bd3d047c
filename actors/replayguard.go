package actors

import (
	"fmt"

	"github.com/millstream/millstream/state"
)

// An entry that ends the whole process (an out-of-memory kill, a fatal
// runtime error, a stack overflow) is beyond the supervisor: no recover()
// sees it, and each restart would replay it and end again. The replay
// guard finds it from the outside, with the store's replay journal:
//
//   - a replay marks how far it got every replayMarkEvery entries;
//   - a replay that ends the process without passing the mark the
//     previous one reached counts a death;
//   - after two deaths at one place, the next replay marks every entry
//     before applying it, for the replayMarkEvery entries after that
//     place (where the crash must be), and Recover runs it alone, so
//     that no other partition's replay can end the process meanwhile;
//   - the entry it was applying when the process ended a third time is
//     poison: dead-lettered with the reason, skipped, and the replay goes
//     on. A live crash becomes a replay crash at the next start, so the
//     same holds for an entry that ended the process when it first came.
//
// The marks are pwrites to the page cache (no sync): cheap enough to take
// every 64 entries, and an ended process keeps them.

// replayMarkEvery is how many entries a replay applies between marks.
const replayMarkEvery = 64

// replayDeathsBeforeCareful is how many replays may end the process at one
// place before the next marks every entry.
const replayDeathsBeforeCareful = 2

// replayGuard follows one partition's replay.
type replayGuard struct {
	p       *partition
	j       *state.ReplayJournal
	mark    state.ReplayMark
	careful bool   // marking every entry up to carefulTo
	carTo   uint64 // the last entry of the careful stretch
	since   int    // entries applied since the last mark
}

// startReplayGuard reads what the previous replays from the same
// checkpoint got to, registers the entry that ended the process as poison
// if one did, and marks this replay's start. Nil without a journal.
func (p *partition) startReplayGuard(from uint64) *replayGuard {
	j := p.g.journal
	if j == nil {
		return nil
	}
	m, ok, err := j.Mark(p.id)
	if err != nil {
		p.g.cfg.Logger.Warn("replay journal unreadable; a log entry that ends the process would not be found", "partition", p.id, "error", err)
		return nil
	}
	switch {
	case !ok || m.From != from:
		// The last replay finished, or a checkpoint since moved the start.
		m = state.ReplayMark{From: from, Reached: from, StartReached: from}
	case m.Applying != 0:
		reason := fmt.Sprintf("the gateway process ended while applying it (%d replays from log position %d ended the process)", m.Deaths+1, from)
		p.g.cfg.Logger.Error("log entry ends the gateway process; it will be skipped and dead-lettered", "partition", p.id, "seq", m.Applying)
		p.g.notePoison(p.id, m.Applying, reason, poisonLimit)
		m.Reached, m.Applying, m.Deaths = m.Applying, 0, 0
		m.StartReached = m.Reached
	default:
		if m.Reached == m.StartReached {
			m.Deaths++
		} else {
			m.Deaths = 1
		}
		m.StartReached = m.Reached
		p.g.replayDeaths.Add(1)
		p.g.cfg.Logger.Warn("the previous replay of this partition ended the process", "partition", p.id,
			"from", from, "reached", m.Reached, "deaths_there", m.Deaths)
	}
	g := &replayGuard{p: p, j: j, mark: m}
	if m.Deaths >= replayDeathsBeforeCareful {
		g.careful, g.carTo = true, m.Reached+replayMarkEvery
		p.g.cfg.Logger.Warn("replaying entry by entry to find the one that ends the process", "partition", p.id,
			"after", m.Reached, "through", g.carTo)
	}
	g.write()
	return g
}

// before is called before entry seq is applied.
func (g *replayGuard) before(seq uint64) {
	if g == nil || !g.careful {
		return
	}
	if seq > g.carTo {
		// Past the stretch without a crash: the cause is not one entry.
		g.careful = false
		g.mark.Applying = 0
		g.write()
		return
	}
	g.mark.Applying = seq
	g.write()
}

// marking reports whether the next after writes a mark: the entry must
// have been applied by then, job actors included.
func (g *replayGuard) marking() bool {
	return g != nil && (g.careful || g.since+1 >= replayMarkEvery)
}

// after is called once entry seq was applied.
func (g *replayGuard) after(seq uint64) {
	if g == nil {
		return
	}
	g.since++
	if g.careful || g.since >= replayMarkEvery {
		g.mark.Reached, g.mark.Applying, g.since = seq, 0, 0
		if !g.careful {
			g.write()
		}
	}
}

// done clears the mark: the replay finished.
func (g *replayGuard) done() {
	if g == nil {
		return
	}
	if err := g.j.ClearMark(g.p.id); err != nil {
		g.p.g.cfg.Logger.Warn("replay journal not cleared", "partition", g.p.id, "error", err)
	}
}

func (g *replayGuard) write() {
	if err := g.j.SetMark(g.p.id, g.mark); err != nil {
		g.p.g.cfg.Logger.Warn("replay journal not written", "partition", g.p.id, "error", err)
	}
}

// replaySuspect reports whether partition p's next replay will be careful
// or will skip an entry that ended the process: it then runs alone.
func (g *Gateway) replaySuspect(p int) bool {
	if g.journal == nil {
		return false
	}
	m, ok, err := g.journal.Mark(p)
	return err == nil && ok && (m.Applying != 0 || m.Deaths+1 >= replayDeathsBeforeCareful)
}
