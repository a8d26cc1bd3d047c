package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/millstream/millstream/operators/value"
)

// The gateway's clock actor: it flushes the router's partial batches
// after Config.BatchDelay (in memory: durable, the log writer batches by
// itself), ticks the partitions every Config.Tick and asks them for a
// checkpoint every Config.CheckpointInterval (durable). It is supervised
// like the rest (restartPolicy, as guardian): a restart re-arms its
// timers, and it holds no other state. Each timer is armed again once its
// message is handled, so a slow round never piles messages up.
//
// When every partition is quiet (quiet.go) it sleeps: it stops ticking
// and checkpointing until the first partition's quiet ends or an event
// wakes one (clockWake, from partition.awake).

// Messages to the clock actor, sent by its own timers; each carries the
// generation of the timers that sent it, so that one sent before a
// restart (still in the mailbox) does not start a second chain.
type (
	clockFlush      struct{ gen int }
	clockTick       struct{ gen int }
	clockCheckpoint struct{ gen int }
	// clockWake ends a quiet sleep (a partition woke, or the sleep's time
	// is up); ignored when not asleep.
	clockWake struct{}
)

// clockFault, set by tests, runs before each tick (a panic there is the
// clock actor's failure).
var clockFault func()

type clock struct {
	g        *Gateway
	self     *actor.PID
	gen      int
	timers   [4]*time.Timer // flush, tick, checkpoint, wake
	sleeping bool
}

// startClock spawns the gateway's clock actor.
func (g *Gateway) startClock() {
	c := &clock{g: g}
	pid := g.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return c }, actor.WithGuardian(restartPolicy())))
	g.clockMu.Lock()
	g.clockPID = pid
	g.clockMu.Unlock()
}

// stopClock stops the clock actor and its timers. Nothing is sent to it
// after: a message to a stopped actor is a dead letter, which protoactor
// logs from a goroutine of its own.
func (g *Gateway) stopClock() {
	g.clockMu.Lock()
	g.clockStopped = true
	g.clockMu.Unlock()
	_ = g.system.Root.StopFuture(g.clockPID).Wait()
}

// sendClock sends msg to the clock actor (to, or the gateway's, known
// once startClock has returned) unless it is stopped.
func (g *Gateway) sendClock(to *actor.PID, msg any) {
	g.clockMu.RLock()
	defer g.clockMu.RUnlock()
	if to == nil {
		to = g.clockPID
	}
	if !g.clockStopped && to != nil {
		g.system.Root.Send(to, msg)
	}
}

// wakeClock ends the clock's quiet sleep, if it sleeps.
func (g *Gateway) wakeClock() { g.sendClock(nil, clockWake{}) }

func (c *clock) Receive(ctx actor.Context) {
	g := c.g
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.self = ctx.Self()
		c.gen++
		c.sleeping = false
		if g.log == nil {
			c.after(0, g.cfg.BatchDelay, clockFlush{c.gen})
		}
		c.after(1, g.cfg.Tick, clockTick{c.gen})
		c.after(2, g.cfg.CheckpointInterval, clockCheckpoint{c.gen})
	case *actor.Restarting, *actor.Stopping:
		for _, t := range c.timers {
			if t != nil {
				t.Stop()
			}
		}
	case clockFlush:
		if m.gen != c.gen {
			return
		}
		g.flushAll()
		c.after(0, g.cfg.BatchDelay, clockFlush{c.gen})
	case clockTick:
		if m.gen != c.gen {
			return
		}
		if clockFault != nil {
			clockFault()
		}
		if g.log != nil && g.realClock {
			if d, ok := g.allQuiet(); ok {
				// Nothing to tick or checkpoint anywhere (the tick would log
				// none): sleep until the first partition's quiet ends or an
				// event wakes one.
				c.sleeping = true
				g.quietSleeps.Add(1)
				c.after(3, d, clockWake{})
				return
			}
		}
		g.tick()
		c.after(1, g.cfg.Tick, clockTick{c.gen})
	case clockCheckpoint:
		if m.gen != c.gen || c.sleeping {
			return // armed again on waking
		}
		if g.store != nil && g.ready.Load() {
			now := value.FromTime(g.cfg.Now())
			for i, pid := range g.parts {
				if !g.quiet(i, now) {
					g.system.Root.Send(pid, &checkpointMsg{})
				}
			}
		}
		c.after(2, g.cfg.CheckpointInterval, clockCheckpoint{c.gen})
	case clockWake:
		if !c.sleeping {
			return
		}
		c.sleeping = false
		if t := c.timers[3]; t != nil {
			t.Stop()
		}
		c.after(1, g.cfg.Tick, clockTick{c.gen})
		c.after(2, g.cfg.CheckpointInterval, clockCheckpoint{c.gen})
	}
}

// after sends msg to the clock actor once d has passed, on timer slot i.
func (c *clock) after(i int, d time.Duration, msg any) {
	self := c.self
	c.timers[i] = time.AfterFunc(d, func() { c.g.sendClock(self, msg) })
}
