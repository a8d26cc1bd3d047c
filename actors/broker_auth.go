package actors

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// Authentication and ACLs of the embedded broker (issue 12).
//
// A client is one of:
//   - a device: a verified device certificate (its common name), a
//     password-file user of role "device" (its username), or, with
//     allow_anonymous, an anonymous client (its client id). A device's
//     client id must be its device id, so nobody takes over another's
//     session.
//   - a reader (password file): client id the username or
//     "<username>/<anything>".
//   - an admin (password file): any client id.
//
// ACLs (aclAllows): a device publishes under devices/{id}/ except
// devices/{id}/twin/desired (the gateway's), and subscribes under
// devices/{id}/twin; a reader publishes nothing and subscribes to any
// filter whose first level is named and is neither "devices" nor a
// $ topic ($share/{group}/ is allowed in front); an admin does anything.
// mochi checks subscriptions when made and every message when delivered,
// so a subscription a session carried over (a reconnect with clean
// session off) leaks nothing either. A denied publish is acknowledged
// and dropped (MQTT 5: PUBACK "not authorized"); a will topic is checked
// at CONNECT.
//
// Without a password file and a CA file every client may do anything,
// as before issue 12 (the loopback demo).

// Roles of the password file.
const (
	MQTTRoleDevice = "device"
	MQTTRoleReader = "reader"
	MQTTRoleAdmin  = "admin"
)

type mqttRole uint8

const (
	roleNone mqttRole = iota
	roleDevice
	roleReader
	roleAdmin
)

func parseRole(s string) mqttRole {
	switch s {
	case MQTTRoleDevice:
		return roleDevice
	case MQTTRoleReader:
		return roleReader
	case MQTTRoleAdmin:
		return roleAdmin
	}
	return roleNone
}

// maxIDLen bounds device ids and usernames (IoT Hub's device id limit).
const maxIDLen = 128

// validID reports whether s can be a device id or username: one MQTT
// topic level without wildcards, printable, no spaces (the password
// file's separator), at most 128 bytes.
func validID(s string) bool {
	if s == "" || len(s) > maxIDLen || !utf8.ValidString(s) || strings.ContainsAny(s, "/+#") {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// PasswordLine makes a line of the broker's password file,
// "<username> <role> <bcrypt hash>" (no newline), for "millstream
// passwd". Role is MQTTRoleDevice (the username is the device id),
// MQTTRoleReader or MQTTRoleAdmin. bcrypt reads at most 72 bytes of a
// password; longer ones are refused.
func PasswordLine(user, role, password string) (string, error) {
	return passwordLine(user, role, password, bcrypt.DefaultCost)
}

func passwordLine(user, role, password string, cost int) (string, error) {
	if !validID(user) {
		return "", fmt.Errorf("actors: username %q: want 1-%d printable characters without spaces, '/', '+' or '#'", user, maxIDLen)
	}
	if parseRole(role) == roleNone {
		return "", fmt.Errorf("actors: role %q: want %s, %s or %s", role, MQTTRoleDevice, MQTTRoleReader, MQTTRoleAdmin)
	}
	if password == "" {
		return "", errors.New("actors: empty password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("actors: password of %s: %w", user, err)
	}
	return user + " " + role + " " + string(hash), nil
}

type mqttUser struct {
	role mqttRole
	hash []byte
}

// readPasswordFile parses "<username> <role> <bcrypt hash>" lines; blank
// lines and lines starting with # are skipped.
func readPasswordFile(path string) (map[string]mqttUser, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("actors: MQTT password file: %w", err)
	}
	users := map[string]mqttUser{}
	// The hash is not quoted in errors: it is a secret of sorts.
	err = eachFieldLine(data, func(n int, f []string) error {
		if len(f) != 3 {
			return fmt.Errorf("%s:%d: want \"<username> <role> <bcrypt hash>\"", path, n)
		}
		if !validID(f[0]) {
			return fmt.Errorf("%s:%d: username %q: want 1-%d printable characters without spaces, '/', '+' or '#'", path, n, f[0], maxIDLen)
		}
		role := parseRole(f[1])
		if role == roleNone {
			return fmt.Errorf("%s:%d: role %q: want %s, %s or %s", path, n, f[1], MQTTRoleDevice, MQTTRoleReader, MQTTRoleAdmin)
		}
		if _, err := bcrypt.Cost([]byte(f[2])); err != nil {
			return fmt.Errorf("%s:%d: user %s: not a bcrypt hash: %w", path, n, f[0], err)
		}
		if _, dup := users[f[0]]; dup {
			return fmt.Errorf("%s:%d: user %s is listed twice", path, n, f[0])
		}
		users[f[0]] = mqttUser{role: role, hash: []byte(f[2])}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("actors: MQTT password file: %w", err)
	}
	return users, nil
}

// security is the broker's authentication state.
type security struct {
	open           bool // no password file, no CA: everything allowed
	allowAnonymous bool
	users          map[string]mqttUser
	// dummyHash is compared for unknown users, so the reply takes as long
	// as for a wrong password.
	dummyHash []byte
	// bcrypt costs tens of milliseconds of CPU: sem bounds how many run
	// at once (half the CPUs), so a connection storm leaves the rest to
	// ingestion.
	sem chan struct{}
	// verified caches, per user, an HMAC (random per-process key) of the
	// password that last passed bcrypt, so a device that reconnects (a
	// refused publish closes MQTT 3.1.1 connections) costs no bcrypt.
	macKey   []byte
	mu       sync.Mutex
	verified map[string][]byte
}

func newSecurity(o BrokerOptions) (*security, error) {
	s := &security{open: o.PasswordFile == "" && o.CAFile == "", allowAnonymous: o.AllowAnonymous, users: map[string]mqttUser{},
		sem: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)), verified: map[string][]byte{}, macKey: make([]byte, 32)}
	if _, err := rand.Read(s.macKey); err != nil {
		return nil, fmt.Errorf("actors: MQTT password cache key: %w", err)
	}
	cost := bcrypt.MinCost
	if o.PasswordFile != "" {
		users, err := readPasswordFile(o.PasswordFile)
		if err != nil {
			return nil, err
		}
		s.users = users
		for _, u := range users {
			cost, _ = bcrypt.Cost(u.hash)
			break
		}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no such user"), cost)
	if err != nil {
		return nil, fmt.Errorf("actors: MQTT password check: %w", err)
	}
	s.dummyHash = dummy
	return s, nil
}

func (s *security) mac(password []byte) []byte {
	m := hmac.New(sha256.New, s.macKey)
	m.Write(password)
	return m.Sum(nil)
}

// checkPassword verifies a user's password.
func (s *security) checkPassword(user string, password []byte) (mqttUser, bool) {
	u, known := s.users[user]
	mac := s.mac(password)
	if known {
		s.mu.Lock()
		ok := hmac.Equal(s.verified[user], mac)
		s.mu.Unlock()
		if ok {
			return u, true
		}
	}
	hash := s.dummyHash
	if known {
		hash = u.hash
	}
	s.sem <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, password)
	<-s.sem
	if !known || err != nil {
		return mqttUser{}, false
	}
	s.mu.Lock()
	s.verified[user] = mac
	s.mu.Unlock()
	return u, true
}

// authenticate decides a CONNECT: the client's role, or why it is refused.
func (s *security) authenticate(conn *brokerConn, pk packets.Packet) (mqttRole, connRefusal, string) {
	clientID, user := pk.Connect.ClientIdentifier, string(pk.Connect.Username)
	if conn != nil && conn.certRefusal != "" {
		return roleNone, refusedNotAuthorized, conn.certRefusal
	}
	if conn != nil && conn.device != "" {
		// The certificate is the credential; a username, if sent, must
		// name the same device, and no password is checked.
		if user != "" && user != conn.device {
			return roleNone, refusedNotAuthorized, "username is not the certificate's device id"
		}
		if clientID != conn.device {
			return roleNone, refusedClientID, "client id must be the certificate's device id"
		}
		return roleDevice, 0, ""
	}
	if user != "" {
		u, ok := s.checkPassword(user, pk.Connect.Password)
		if !ok {
			return roleNone, refusedCredentials, "unknown user or wrong password"
		}
		switch {
		case u.role == roleDevice && clientID != user:
			return roleNone, refusedClientID, "a device's client id must be its username"
		case u.role == roleReader && clientID != user && !strings.HasPrefix(clientID, user+"/"):
			return roleNone, refusedClientID, "a reader's client id must be its username or start with <username>/"
		}
		return u.role, 0, ""
	}
	if !s.allowAnonymous {
		return roleNone, refusedNotAuthorized, "no credentials"
	}
	if !validID(clientID) {
		return roleNone, refusedClientID, "an anonymous client's id must be a valid device id"
	}
	if _, ok := s.users[clientID]; ok {
		return roleNone, refusedNotAuthorized, "an anonymous client's id must not be a user of the password file"
	}
	return roleDevice, 0, ""
}

// roleOf is an accepted client's role. It is derived again from what was
// checked at CONNECT (certificate, username), which a client cannot
// change afterwards: a device's id is its client id.
func (s *security) roleOf(cl *mqtt.Client) mqttRole {
	if s.open || cl.Net.Inline {
		return roleAdmin
	}
	if c, ok := cl.Net.Conn.(*brokerConn); ok && c.device != "" {
		return roleDevice
	}
	if len(cl.Properties.Username) > 0 {
		return s.users[string(cl.Properties.Username)].role
	}
	return roleDevice // anonymous, admitted with allow_anonymous only
}

// aclAllows reports whether a client of role r (device id id) may
// publish to topic (write) or subscribe to the filter, or receive a
// message on the topic (read).
func aclAllows(r mqttRole, id, topic string, write bool) bool {
	switch r {
	case roleAdmin:
		return true
	case roleDevice:
		if strings.HasPrefix(topic, iothubPrefix) {
			return iothubACL(topic, write)
		}
		// id is a valid device id: no wildcard, no '/', so the prefix is
		// literal and a filter under it matches nothing else.
		rest, ok := strings.CutPrefix(topic, "devices/")
		if !ok {
			return false
		}
		if rest, ok = strings.CutPrefix(rest, id); !ok || !strings.HasPrefix(rest, "/") {
			return false
		}
		rest = rest[1:]
		if write {
			return !underLevel(rest, "twin/desired")
		}
		return underLevel(rest, "twin")
	case roleReader:
		return !write && readerMayRead(topic)
	}
	return false
}

// underLevel reports whether topic is level or below it.
func underLevel(topic, level string) bool {
	rest, ok := strings.CutPrefix(topic, level)
	return ok && (rest == "" || rest[0] == '/')
}

// readerMayRead: a filter (or topic) whose first level is named, and is
// neither "devices" nor a $ topic, after an optional $share/{group}/.
func readerMayRead(filter string) bool {
	first, rest, _ := strings.Cut(filter, "/")
	if strings.EqualFold(first, "$share") {
		if _, filter, _ = strings.Cut(rest, "/"); filter == "" {
			return false
		}
		first, _, _ = strings.Cut(filter, "/")
	}
	return first != "+" && first != "#" && first != "devices" && !strings.HasPrefix(first, "$")
}

// connRefusal is why a connection was refused (the reason label of
// millstream_mqtt_connect_refused_total).
type connRefusal int

const (
	refusedCredentials   connRefusal = iota // unknown user or wrong password
	refusedNotAuthorized                    // no credentials, a certificate that names no device, a will it may not publish
	refusedClientID                         // a client id its identity may not use
	refusedLimit                            // max_connections
	refusedTLS                              // failed TLS handshake (no TLS, a certificate of another CA)
	numConnRefusals
)

var connRefusalNames = [numConnRefusals]string{"bad_credentials", "not_authorized", "client_id", "limit", "tls"}

// connackCode is the CONNACK reason for a refusal in the client's
// protocol version (mochi maps these v5 codes to the MQTT 3.1.1 ones:
// ErrMalformedPassword to 4 "bad user name or password",
// ErrBadUsernameOrPassword to 5 "not authorized").
func connackCode(r connRefusal, version byte) packets.Code {
	switch r {
	case refusedCredentials:
		if version < 5 {
			return packets.ErrMalformedPassword
		}
		return packets.ErrBadUsernameOrPassword
	case refusedClientID:
		return packets.ErrClientIdentifierNotValid
	case refusedLimit:
		if version < 5 {
			return packets.ErrServerUnavailable
		}
		return packets.ErrServerBusy
	}
	if version < 5 {
		return packets.ErrBadUsernameOrPassword
	}
	return packets.ErrNotAuthorized
}

// refuseConn counts a refused connection and logs it, rate-limited.
func (b *Broker) refuseConn(r connRefusal, client, msg string, args ...any) {
	b.connRefused[r].Add(1)
	if b.securityLog.allow() {
		b.logger.Warn("MQTT connection refused: "+msg, append(args, "client", client, "reason", connRefusalNames[r], "refused", b.connRefused[r].Load())...)
	}
}

// aclAction labels millstream_mqtt_acl_denied_total.
type aclAction int

const (
	aclPublish aclAction = iota
	aclSubscribe
)

// denyACL counts a refused publish or subscription (or a message withheld
// from a subscription) and logs it, rate-limited.
func (b *Broker) denyACL(cl *mqtt.Client, topic string, write bool) {
	action, name := aclSubscribe, "subscribe"
	if write {
		action, name = aclPublish, "publish"
	}
	n := b.aclDenied[action].Add(1)
	if b.securityLog.allow() {
		b.logger.Warn("MQTT "+name+" denied by ACL", "client", cl.ID, "username", string(cl.Properties.Username), "topic", topic, "denied", n)
	}
}

// mayRetain reports whether a retained message of size bytes on topic
// may be kept: it replaces one or there are fewer than max_retained, and
// the retained payloads stay within max_retained_bytes. Concurrent
// publishes may overshoot by a few.
func (b *Broker) mayRetain(topic string, size int) bool {
	old, replacing := b.srv.Topics.Retained.Get(topic)
	grow := int64(size - len(old.Payload))
	countOK := replacing || b.srv.Topics.Retained.Len()-int(b.sysRetained.Load()) < b.maxRetained
	if countOK && b.retainedBytes.Load()+grow <= b.maxRetainedBytes {
		b.retainedBytes.Add(grow)
		return true
	}
	// Count again before refusing (only at a limit, so rarely): mochi
	// retains its $SYS topics too, some after Serve returned, and expires
	// retained messages by itself.
	sys, total := 0, int64(0)
	for t, pk := range b.srv.Topics.Retained.GetAll() {
		if strings.HasPrefix(t, "$SYS/") {
			sys++
			continue
		}
		total += int64(len(pk.Payload))
	}
	b.sysRetained.Store(int64(sys))
	b.retainedBytes.Store(total)
	countOK = replacing || b.srv.Topics.Retained.Len()-sys < b.maxRetained
	if countOK && total+grow <= b.maxRetainedBytes {
		b.retainedBytes.Add(grow)
		return true
	}
	n := b.retainedDropped.Add(1)
	if b.securityLog.allow() {
		b.logger.Warn("MQTT retained message not kept: max_retained or max_retained_bytes reached", "topic", topic, "bytes", size,
			"max_retained", b.maxRetained, "max_retained_bytes", b.maxRetainedBytes, "dropped", n)
	}
	return false
}

// retainCleared accounts for a retained message deleted (an empty
// retained publish).
func (b *Broker) retainCleared(topic string) {
	if old, ok := b.srv.Topics.Retained.Get(topic); ok {
		b.retainedBytes.Add(-int64(len(old.Payload)))
	}
}

// securityHook authenticates clients, applies the ACLs and the limits on
// connections and retained messages.
type securityHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *securityHook) ID() string { return "millstream-security" }

func (h *securityHook) Provides(bt byte) bool {
	switch bt {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWill:
		return true
	}
	return false
}

// OnConnect authenticates here rather than in OnConnectAuthenticate,
// whose refusal is always "bad username or password": a client without
// credentials is told "not authorized", one over the limit "server
// unavailable".
func (h *securityHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	refuse := func(r connRefusal, msg string) error {
		b.refuseConn(r, cl.ID, msg, "remote", cl.Net.Remote, "listener", cl.Net.Listener)
		code := connackCode(r, cl.Properties.ProtocolVersion)
		_ = b.srv.SendConnack(cl, code, false, nil)
		return code
	}
	// mochi's own check (Capabilities.MaximumClients) is not counted.
	if atomic.LoadInt64(&b.srv.Info.ClientsConnected) >= int64(b.maxClients) {
		return refuse(refusedLimit, "max_connections reached")
	}
	s := b.sec
	if s.open {
		return nil
	}
	conn, _ := cl.Net.Conn.(*brokerConn)
	role, r, msg := s.authenticate(conn, pk)
	if role == roleNone {
		return refuse(r, msg)
	}
	// mochi publishes a will without an ACL check.
	if pk.Connect.WillFlag && !aclAllows(role, pk.Connect.ClientIdentifier, pk.Connect.WillTopic, true) {
		return refuse(refusedNotAuthorized, "will topic not allowed")
	}
	return nil
}

// OnConnectAuthenticate accepts: OnConnect has decided.
func (h *securityHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck is called for each subscription filter and each message
// about to be delivered to a subscriber. Publishes are decided in
// OnPublish, where a topic alias is resolved and a denial can be
// answered.
func (h *securityHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.b.sec
	if write || s.open || cl.Net.Inline || aclAllows(s.roleOf(cl), cl.ID, topic, false) {
		return true
	}
	h.b.denyACL(cl, topic, false)
	return false
}

// OnPublish applies the ACLs to publishes and keeps retained messages
// within max_retained. A denied QoS 1 or 2 publish is answered as an
// oversized one is: MQTT 5 gets "not authorized" in its PUBACK (PUBREC),
// MQTT 3.1.1, which has no negative acknowledgement, a plain one, and the
// message is dropped. Closing the connection instead (mochi's way) would
// have the client reconnect and resend it forever.
func (h *securityHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if s := h.b.sec; !s.open && !aclAllows(s.roleOf(cl), cl.ID, pk.TopicName, true) {
		h.b.denyACL(cl, pk.TopicName, true)
		if pk.FixedHeader.Qos == 0 || cl.Properties.ProtocolVersion < 5 {
			return pk, packets.CodeSuccessIgnore // acknowledged, neither ingested nor delivered
		}
		nack(cl, pk.FixedHeader.Qos, pk.PacketID, packets.ErrNotAuthorized)
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Retain {
		switch {
		case len(pk.Payload) == 0:
			h.b.retainCleared(pk.TopicName)
		case !h.b.mayRetain(pk.TopicName, len(pk.Payload)):
			pk.FixedHeader.Retain = false // delivered, not kept
		}
	}
	return pk, nil
}

// OnWill keeps a retained will within max_retained.
func (h *securityHook) OnWill(_ *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain && len(will.Payload) > 0 && !h.b.mayRetain(will.TopicName, len(will.Payload)) {
		will.Retain = false
	}
	return will, nil
}
