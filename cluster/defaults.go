package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// FailureDetection is memberlist's failure detection settings.
type FailureDetection struct {
	ProbeInterval, ProbeTimeout, GossipInterval time.Duration
	SuspicionMult                               int
}

// MemberlistLANDefaults are the failure detection settings a gateway uses
// when its configuration gives none: memberlist's LAN defaults
// (internal/config fills them in and checks that they agree).
func MemberlistLANDefaults() FailureDetection {
	c := memberlist.DefaultLANConfig()
	return FailureDetection{ProbeInterval: c.ProbeInterval, ProbeTimeout: c.ProbeTimeout, GossipInterval: c.GossipInterval, SuspicionMult: c.SuspicionMult}
}
