package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"strings"

	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Exposures lists the listening surfaces of a gateway configuration that
// are reachable beyond this machine without encryption and
// authentication: each a sentence naming the setting and what it lacks.
// A gateway refuses to start with any unless it is told --insecure
// (insecure: true), and then warns about them every minute.
func Exposures(g *pb.GatewayConfig) []string {
	var out []string
	if g.MqttListen != EmbeddedBrokerOff && g.MqttListen != "" && !IsLoopback(g.MqttListen) {
		out = append(out, fmt.Sprintf("mqtt_listen %s is plain MQTT off loopback: devices' telemetry and credentials cross the network unencrypted (use mqtt.tls_listen, or bind mqtt_listen to 127.0.0.1)", g.MqttListen))
	}
	if m := g.Mqtt; m != nil && m.TlsListen != "" && !IsLoopback(m.TlsListen) && !mqttAuthenticated(m) {
		out = append(out, fmt.Sprintf("mqtt.tls_listen %s accepts anonymous clients: set mqtt.password_file or mqtt.tls.ca_file (and leave allow_anonymous off)", m.TlsListen))
	}
	if g.HttpListen != "" && !IsLoopback(g.HttpListen) {
		a := g.Admin
		if a.GetTls().GetCertFile() == "" {
			out = append(out, fmt.Sprintf("http_listen %s is plain HTTP off loopback: set admin.tls", g.HttpListen))
		}
		if a.GetTokensFile() == "" && a.GetTls().GetCaFile() == "" {
			out = append(out, fmt.Sprintf("http_listen %s has no authentication: set admin.tokens_file or admin.tls.ca_file", g.HttpListen))
		}
	}
	if c := g.Cluster; c != nil {
		remote := c.RemoteListen
		if remote == "" {
			remote = "127.0.0.1:7947"
		}
		gossip := c.GossipListen
		if gossip == "" {
			gossip = "127.0.0.1:7946"
		}
		offLoopback := !IsLoopback(remote) || !IsLoopback(gossip) || (c.GossipAdvertise != "" && !IsLoopback(c.GossipAdvertise))
		for _, s := range c.Seeds {
			offLoopback = offLoopback || !IsLoopback(s)
		}
		if offLoopback {
			if t := c.Tls; t.GetCertFile() == "" || t.GetKeyFile() == "" || t.GetCaFile() == "" {
				out = append(out, fmt.Sprintf("the cluster link (remote_listen %s) is off loopback without mutual TLS: set cluster.tls cert_file, key_file and ca_file", remote))
			}
			if c.GossipKey == "" && c.GossipKeyFile == "" {
				out = append(out, fmt.Sprintf("gossip (gossip_listen %s) is off loopback unencrypted: set cluster.gossip_key or gossip_key_file", gossip))
			}
		}
	}
	return out
}

func mqttAuthenticated(m *pb.MqttBroker) bool {
	return !m.AllowAnonymous && (m.PasswordFile != "" || m.GetTls().GetCaFile() != "")
}

// IsLoopback says whether a host:port listen address (or bare host) is
// reachable from this machine only. An empty host, 0.0.0.0 and :: listen
// on every interface; a name other than localhost may resolve anywhere.
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateSecurity checks the security settings that can be checked
// without reading files, and refuses exposed listeners unless insecure.
func validateSecurity(g *pb.GatewayConfig) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	pair := func(name string, t *pb.ServerTLS) {
		if t == nil {
			return
		}
		if t.CertFile == "" || t.KeyFile == "" {
			bad("%s needs cert_file and key_file", name)
		}
	}
	if a := g.Admin; a != nil {
		pair("admin.tls", a.Tls)
		for _, o := range a.AllowedOrigins {
			if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
				bad("admin.allowed_origins %q: want scheme://host[:port]", o)
			}
		}
	}
	if m := g.Mqtt; m != nil {
		pair("mqtt.tls", m.Tls)
		if m.TlsListen != "" && m.GetTls().GetCertFile() == "" {
			bad("mqtt.tls_listen %s needs mqtt.tls cert_file and key_file", m.TlsListen)
		}
		if m.TlsListen == "" && m.Tls != nil {
			bad("mqtt.tls is set but mqtt.tls_listen is not: say where the MQTTS listener listens")
		}
		if d := m.MaxSessionExpiry; d != nil && d.AsDuration() < 0 {
			bad("mqtt.max_session_expiry must not be negative")
		}
	}
	if c := g.Cluster; c != nil {
		if t := c.Tls; t != nil {
			pair("cluster.tls", t)
			if t.CaFile == "" {
				bad("cluster.tls: ca_file is required (the cluster CA every peer's certificate is checked against)")
			}
		}
		if c.Tls != nil && c.GossipKey == "" && c.GossipKeyFile == "" {
			// Without the key anyone can announce a member in gossip: the
			// link refuses its messages, but placement would count it.
			bad("cluster.tls needs a gossip key too (gossip_key_file or gossip_key)")
		}
		if c.GossipKey != "" && c.GossipKeyFile != "" {
			bad("cluster: gossip_key and gossip_key_file are both set; keep one")
		}
		for i, k := range c.GossipOldKeys {
			if err := checkGossipKey(k); err != nil {
				bad("cluster.gossip_old_keys[%d]: %v", i, err)
			}
		}
	}
	if !g.Insecure {
		for _, e := range Exposures(g) {
			bad("%s; or start with --insecure to accept the risk (README, \"Securing a gateway cluster\")", e)
		}
	}
	return errs
}

// checkGossipKey checks a base64 memberlist key (AES-128, -192 or -256).
func checkGossipKey(k string) error {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
	if err != nil {
		return fmt.Errorf("not base64: %w", err)
	}
	if n := len(b); n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("%d bytes: a gossip key must be 16, 24 or 32", n)
	}
	return nil
}
