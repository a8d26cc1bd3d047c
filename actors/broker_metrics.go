package actors

import "github.com/prometheus/client_golang/prometheus"

var (
	descACLDenied = prometheus.NewDesc("millstream_mqtt_acl_denied_total",
		"MQTT publishes (action=publish) and subscriptions or deliveries to a subscription (action=subscribe) the broker's ACLs refused.", []string{"action"}, nil)
	descConnRefused = prometheus.NewDesc("millstream_mqtt_connect_refused_total",
		"MQTT connections refused: bad_credentials, not_authorized (no credentials, a certificate naming no device, a will topic not allowed), client_id, limit (max_connections), tls (failed handshake).", []string{"reason"}, nil)
	descRetainedDropped = prometheus.NewDesc("millstream_mqtt_retained_dropped_total",
		"Retained MQTT messages delivered but not kept because max_retained was reached.", nil, nil)
	descConnections = prometheus.NewDesc("millstream_mqtt_connections",
		"Open sockets of the embedded broker's listeners, clients and connections still in their handshake.", nil, nil)
)

// Describe and Collect make the broker a Prometheus collector of its
// security counters (register it with the admin API's registry).
func (b *Broker) Describe(ch chan<- *prometheus.Desc) {
	ch <- descACLDenied
	ch <- descConnRefused
	ch <- descRetainedDropped
	ch <- descConnections
}

func (b *Broker) Collect(ch chan<- prometheus.Metric) {
	s := b.SecurityStats()
	ch <- prometheus.MustNewConstMetric(descACLDenied, prometheus.CounterValue, float64(s.ACLDeniedPublish), "publish")
	ch <- prometheus.MustNewConstMetric(descACLDenied, prometheus.CounterValue, float64(s.ACLDeniedSubscribe), "subscribe")
	for reason, n := range s.ConnectRefused {
		ch <- prometheus.MustNewConstMetric(descConnRefused, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(descRetainedDropped, prometheus.CounterValue, float64(s.RetainedDropped))
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(s.OpenConnections))
}

// BrokerSecurityStats are the broker's security counters.
type BrokerSecurityStats struct {
	ACLDeniedPublish, ACLDeniedSubscribe uint64
	// ConnectRefused by reason: bad_credentials, not_authorized,
	// client_id, limit, tls.
	ConnectRefused  map[string]uint64
	RetainedDropped uint64
	OpenConnections int64
}

// SecurityStats reads the security counters.
func (b *Broker) SecurityStats() BrokerSecurityStats {
	s := BrokerSecurityStats{ACLDeniedPublish: b.aclDenied[aclPublish].Load(), ACLDeniedSubscribe: b.aclDenied[aclSubscribe].Load(),
		ConnectRefused: map[string]uint64{}, RetainedDropped: b.retainedDropped.Load(), OpenConnections: b.openConns.Load()}
	for r, name := range connRefusalNames {
		s.ConnectRefused[name] = b.connRefused[r].Load()
	}
	return s
}
