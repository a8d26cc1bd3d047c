package cluster

import (
	"fmt"

	"github.com/millstream/millstream/actors"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// ErrLiveMember: a gateway in the view cannot be forgotten (the admin API
// answers 400, as for actors.ErrBadRequest).
var ErrLiveMember = fmt.Errorf("%w: the gateway is a live member", actors.ErrBadRequest)

// Forget removes a gateway that is gone for good (its machine lost) from
// the gateways counted for the majority, here and on every gateway (C13).
// Without it, such a gateway counts as down forever: each one lost that
// way makes the cluster tolerate one failure less, and a replacement under
// a new name adds to the count. A gateway in this one's view is refused
// (drain it: SIGTERM). known reports whether this gateway counted it.
func (n *Node) Forget(gateway string) (known bool, err error) {
	if known, err = n.forget(gateway); err != nil {
		return false, err
	}
	n.mu.Lock()
	peers := n.peersLocked()
	n.mu.Unlock()
	for _, m := range peers {
		n.sendTo(m, &pb.StreamMsg{Body: &pb.StreamMsg_Forget{Forget: &pb.ForgetGateway{Gateway: gateway}}}, nil)
	}
	return known, nil
}

// forget applies a Forget here. The mark is stored and sent to every
// gateway that joins, so one that was down meanwhile forgets it too; it is
// dropped when the gateway shows up again (refreshView).
func (n *Node) forget(gateway string) (known bool, err error) {
	n.mu.Lock()
	_, live := n.bases[gateway]
	if gateway == n.cfg.Gateway || live {
		n.mu.Unlock()
		return false, fmt.Errorf("%w: %s is in the view; stop it with SIGTERM instead (it hands its partitions off and leaves)", ErrLiveMember, gateway)
	}
	known = n.known[gateway]
	delete(n.known, gateway)
	n.forgotten[gateway] = true
	n.mu.Unlock()
	if err := n.store.DeleteGateway(gateway); err != nil {
		return known, err
	}
	if err := n.store.SaveForgotten(gateway); err != nil {
		return known, err
	}
	if known {
		n.log.Warn("gateway forgotten: it no longer counts for the majority", "gateway", gateway)
	}
	return known, nil
}

// sendForgotten gives a member that joined the gateways forgotten here.
func (n *Node) sendForgotten(member string) {
	n.mu.Lock()
	var names []string
	for g := range n.forgotten {
		names = append(names, g)
	}
	n.mu.Unlock()
	for _, g := range names {
		n.sendTo(member, &pb.StreamMsg{Body: &pb.StreamMsg_Forget{Forget: &pb.ForgetGateway{Gateway: g}}}, nil)
	}
}

// peersLocked lists the other members in the view (n.mu held).
func (n *Node) peersLocked() []string {
	var peers []string
	for name := range n.view {
		if name != n.name {
			peers = append(peers, name)
		}
	}
	return peers
}
