package actors

import (
	"bytes"
	"os"
	"sync"
	"syscall"
)

// Fault injection for the tests of a log entry that ends the process
// (replayguard.go): with MILLSTREAM_FAULT_KILL_ON set, a partition that
// applies an event whose payload contains its value sends the process
// SIGKILL, as the kernel's out-of-memory killer would. Off unless the
// variable is set; never in production.
const killOnEnv = "MILLSTREAM_FAULT_KILL_ON"

func faultKillOn() []byte {
	if v := os.Getenv(killOnEnv); v != "" {
		return []byte(v)
	}
	return nil
}

// killIfFault ends the process if payload carries the fault marker.
func (g *Gateway) killIfFault(payload []byte) {
	if g.killOn != nil && bytes.Contains(payload, g.killOn) {
		g.cfg.Logger.Error("fault injection: the process kills itself", "marker", string(g.killOn))
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// With MILLSTREAM_FAULT_JOB_PANIC_ON set, a job actor panics the first
// time in the process it applies an event whose payload contains the
// value (once per distinct payload): fault injection for the process-level
// tests of a job restarted alone, replays and kill -9 included (a
// restarted process panics again on the same events as it replays them).
// Off unless the variable is set; never in production.
const jobPanicOnEnv = "MILLSTREAM_FAULT_JOB_PANIC_ON"

// jobPanicFault returns the jobFault hook the variable asks for, or nil.
func jobPanicFault() func(job string, op *jobOp) {
	marker := os.Getenv(jobPanicOnEnv)
	if marker == "" {
		return nil
	}
	var seen sync.Map // job + payload -> panicked once
	return func(job string, op *jobOp) {
		if op == nil || op.kind != opIngest || !bytes.Contains(op.payload, []byte(marker)) {
			return
		}
		if _, again := seen.LoadOrStore(job+"\x00"+string(op.payload), true); !again {
			panic("fault injection: " + jobPanicOnEnv)
		}
	}
}
