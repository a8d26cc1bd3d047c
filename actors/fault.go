package actors

import (
	"bytes"
	"os"
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
