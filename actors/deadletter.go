package actors

import (
	"sync/atomic"

	"github.com/millstream/millstream/operators/exec"
)

// deadCollector counts dead letters (tests; the gateway's dead-letter
// output builds on DeadLetterSink).
type deadCollector struct{ count atomic.Uint64 }

func (d *deadCollector) DeadLetter(string, exec.DeadLetter) { d.count.Add(1) }
