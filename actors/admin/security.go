package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/millstream/millstream/internal/certs"
	"github.com/millstream/millstream/internal/config"
	"github.com/millstream/millstream/internal/console"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Admin API roles: read may GET and HEAD, operate may do anything.
const (
	RoleRead    = "read"
	RoleOperate = "operate"
)

// Security says who may call the admin API and from where.
//
// Every request but /healthz and /readyz is checked, in this order:
//
//   - Host: an IP address, localhost, or one of Hosts; otherwise 421
//     (a browser tricked by DNS rebinding sends the attacker's name).
//   - Origin, when sent: the API's own origin or one of Origins;
//     otherwise 403 (a web page the operator has open cannot call it).
//   - With authentication on (tokens or client certificates): a bearer
//     token or a verified client certificate, else 401 with
//     WWW-Authenticate; a role that does not allow the method, 403.
//   - A request that changes something (any method but GET, HEAD and
//     OPTIONS) must not carry a body type a browser sends across origins
//     without asking (text/plain, forms), and a POST with a body must name
//     its type: 415. So no "simple" cross-origin request can deploy a job.
//
// Each refusal is counted in millstream_admin_refused_total{reason} and
// logged, at most once every 5 s.
type Security struct {
	// TokensFile holds the bearer tokens ("<name> <role> <sha256 hex>"
	// per line); it is read again when it changes.
	TokensFile string
	// ClientCerts: the server verifies client certificates (TLS with a
	// client CA); a verified one authenticates, its OU is the role.
	ClientCerts bool
	// Origins are the browser origins allowed besides the API's own.
	Origins []string
	// Hosts are the host names the API answers to besides IP addresses
	// and localhost (the gateway's name, its certificate's names, ...).
	Hosts []string
	// Pprof serves /debug/pprof (to the operate role when
	// authentication is on).
	Pprof bool
}

// Token is one line of the tokens file.
type Token struct {
	Name string
	Role string
	Hash [sha256.Size]byte
}

// HashToken is the SHA-256 of a token, as the tokens file holds it (hex).
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ParseTokens reads a tokens file's content; blank lines and lines
// starting with # are skipped.
func ParseTokens(data []byte) ([]Token, error) {
	var toks []Token
	names := map[string]bool{}
	err := config.EachFieldLine(data, func(n int, f []string) error {
		if len(f) != 3 {
			return fmt.Errorf("line %d: want \"<name> <role> <sha256 hex of the token>\" (millstream token makes one)", n)
		}
		if f[1] != RoleRead && f[1] != RoleOperate {
			return fmt.Errorf("line %d: role %q: want read or operate", n, f[1])
		}
		h, err := hex.DecodeString(f[2])
		if err != nil || len(h) != sha256.Size {
			return fmt.Errorf("line %d: %q is not a SHA-256 in hex (64 digits); the file holds hashes, not tokens", n, f[2])
		}
		if names[f[0]] {
			return fmt.Errorf("line %d: token name %q is used twice", n, f[0])
		}
		names[f[0]] = true
		t := Token{Name: f[0], Role: f[1]}
		copy(t.Hash[:], h)
		toks = append(toks, t)
		return nil
	})
	return toks, err
}

// tokenSet is the tokens file as last read.
type tokenSet struct {
	tokens  []Token
	modTime time.Time
	size    int64
}

// guard enforces Security around the API's handler.
type guard struct {
	sec     Security
	origins map[string]bool
	hosts   map[string]bool
	logger  *slog.Logger
	refused *prometheus.CounterVec

	tokens    atomic.Pointer[tokenSet]
	reloadMu  sync.Mutex
	lastCheck atomic.Int64 // unix nanos of the last look at the tokens file
	lastWarn  atomic.Int64
}

func newGuard(sec Security, logger *slog.Logger, refused *prometheus.CounterVec) (*guard, error) {
	if logger == nil {
		logger = slog.Default()
	}
	g := &guard{sec: sec, origins: map[string]bool{}, hosts: map[string]bool{"localhost": true}, logger: logger, refused: refused}
	for _, o := range sec.Origins {
		n, err := normalOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("admin.allowed_origins: %w", err)
		}
		g.origins[n] = true
		u, _ := url.Parse(n)
		g.hosts[u.Hostname()] = true
	}
	for _, h := range sec.Hosts {
		g.hosts[normalHost(h)] = true
	}
	if sec.TokensFile != "" {
		ts, err := readTokens(sec.TokensFile)
		if err != nil {
			return nil, err
		}
		g.tokens.Store(ts)
		g.lastCheck.Store(time.Now().UnixNano())
	}
	return g, nil
}

func readTokens(path string) (*tokenSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("admin.tokens_file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("admin.tokens_file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("admin.tokens_file %s: %w", path, err)
	}
	toks, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("admin.tokens_file %s: %w", path, err)
	}
	return &tokenSet{tokens: toks, modTime: st.ModTime(), size: st.Size()}, nil
}

// currentTokens returns the tokens, reading the file again (at most every
// 2 s) when it has changed, so a revoked token stops working without a
// restart. A file that no longer parses keeps the tokens read before.
func (g *guard) currentTokens() []Token {
	ts := g.tokens.Load()
	now := time.Now().UnixNano()
	if now-g.lastCheck.Load() < int64(2*time.Second) || !g.reloadMu.TryLock() {
		return ts.tokens
	}
	defer g.reloadMu.Unlock()
	g.lastCheck.Store(now)
	st, err := os.Stat(g.sec.TokensFile)
	if errors.Is(err, fs.ErrNotExist) {
		// Deleting the file revokes every token (it used to leave them
		// all in force, silently).
		if ts.tokens != nil {
			g.tokens.Store(&tokenSet{})
			g.logger.Error("admin tokens file is gone; every bearer token is refused until it is back", "path", g.sec.TokensFile)
		}
		return nil
	}
	if err != nil {
		g.logger.Error("admin tokens file cannot be read; the tokens read before stay in force", "path", g.sec.TokensFile, "error", err)
		return ts.tokens
	}
	if st.ModTime().Equal(ts.modTime) && st.Size() == ts.size {
		return ts.tokens
	}
	next, err := readTokens(g.sec.TokensFile)
	if err != nil {
		g.logger.Error("admin tokens file changed but cannot be read; the tokens read before stay in force", "error", err)
		return ts.tokens
	}
	g.tokens.Store(next)
	g.logger.Info("admin tokens file read again", "path", g.sec.TokensFile, "tokens", len(next.tokens))
	return next.tokens
}

func (g *guard) authOn() bool { return g.sec.TokensFile != "" || g.sec.ClientCerts }

// principal is who made a request.
type principal struct{ name, role, via string }

// principalKey keys a request's principal in its context (wrap puts it
// there for the handlers).
type principalKey struct{}

// principalOf is who made r, as wrap found it.
func principalOf(r *http.Request) (principal, bool) {
	p, ok := r.Context().Value(principalKey{}).(principal)
	return p, ok
}

// authenticate finds the caller: a bearer token if one is sent (it must
// be valid), else a verified client certificate.
func (g *guard) authenticate(r *http.Request) (principal, string) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return principal{}, "unsupported Authorization scheme (send Authorization: Bearer <token>)"
		}
		if g.sec.TokensFile == "" {
			return principal{}, "this gateway takes no bearer tokens (no admin.tokens_file): use a client certificate"
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		var found *Token
		// Compare against every token in constant time, so the time
		// taken tells nothing about which hash was close.
		for _, t := range g.currentTokens() {
			if subtle.ConstantTimeCompare(sum[:], t.Hash[:]) == 1 && found == nil {
				found = &t
			}
		}
		if found == nil {
			return principal{}, "unknown bearer token"
		}
		return principal{name: found.Name, role: found.Role, via: "token"}, ""
	}
	if g.sec.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		role := ""
		if len(c.Subject.OrganizationalUnit) == 1 {
			role = c.Subject.OrganizationalUnit[0]
		}
		return principal{name: c.Subject.CommonName, role: role, via: "certificate"}, ""
	}
	return principal{}, "authentication required: a bearer token or a client certificate"
}

// allows reports whether role may make a request with method.
func allows(role, method string) bool {
	switch role {
	case RoleOperate:
		return true
	case RoleRead:
		return method == http.MethodGet || method == http.MethodHead
	}
	return false
}

func normalOrigin(o string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an origin (scheme://host[:port])", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// normalHost is a Host header's or a name's host part, lower case,
// without port, brackets or trailing dot.
func normalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// hostAllowed: DNS rebinding needs a name the attacker's DNS answers, so
// IP addresses are safe and names must be known.
func (g *guard) hostAllowed(host string) bool {
	h := normalHost(host)
	if h == "" || net.ParseIP(h) != nil || g.hosts[h] {
		return true
	}
	return false
}

// ownOrigin is the origin a browser that loaded the API itself sends.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.ToLower(scheme + "://" + r.Host)
}

// changes reports whether a method may change something.
func changes(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// bodyTypeOK refuses the body types a browser sends across origins
// without a preflight; a POST (a simple method) with a body must also
// name one (a body-less POST, such as cluster forget, carries no job).
func bodyTypeOK(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return r.Method != http.MethodPost || r.ContentLength == 0
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "text/plain", "application/x-www-form-urlencoded", "multipart/form-data":
		return false
	}
	return true
}

// wrap puts the checks in front of next.
func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		if !g.hostAllowed(r.Host) {
			g.refuse(w, r, http.StatusMisdirectedRequest, "host", fmt.Sprintf("host %q is not a name of this gateway (add it to the certificate or admin.allowed_origins)", r.Host))
			return
		}
		origin := r.Header.Get("Origin")
		listed := false
		if origin != "" {
			o, err := normalOrigin(origin)
			listed = err == nil && g.origins[o]
			if !listed && (err != nil || o != ownOrigin(r)) {
				g.refuse(w, r, http.StatusForbidden, "origin", fmt.Sprintf("origin %q may not call this API (admin.allowed_origins)", origin))
				return
			}
			if listed {
				w.Header().Set("Access-Control-Allow-Origin", o)
				w.Header().Add("Vary", "Origin")
			}
		}
		if r.Method == http.MethodOptions {
			// A CORS preflight carries no credentials; only listed
			// origins learn what they may send.
			if !listed {
				g.refuse(w, r, http.StatusForbidden, "origin", "preflight from an origin not in admin.allowed_origins")
				return
			}
			w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, POST, DELETE")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		p := principal{name: "anonymous", role: RoleOperate, via: "none"}
		if g.authOn() && !consoleFile(r) {
			var why string
			if p, why = g.authenticate(r); why != "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="millstream"`)
				g.refuse(w, r, http.StatusUnauthorized, "unauthenticated", why)
				return
			}
			if !allows(p.role, r.Method) {
				g.refuse(w, r, http.StatusForbidden, "forbidden", fmt.Sprintf("%s %q has role %q, which may not %s", p.via, p.name, p.role, r.Method))
				return
			}
		}
		if changes(r.Method) && !bodyTypeOK(r) {
			g.refuse(w, r, http.StatusUnsupportedMediaType, "content_type",
				fmt.Sprintf("Content-Type %q: send application/json, application/yaml or a text proto type", r.Header.Get("Content-Type")))
			return
		}
		if strings.HasPrefix(r.URL.Path, "/debug/pprof") && g.authOn() && p.role != RoleOperate {
			g.refuse(w, r, http.StatusForbidden, "forbidden", "profiles need the operate role")
			return
		}
		if changes(r.Method) {
			g.logger.Info("admin API change", "method", r.Method, "path", r.URL.Path, "by", p.name, "via", p.via, "remote", r.RemoteAddr)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// consoleFile reports whether r asks for one of the console's own files
// (its page, script, style, icon): the same bytes for every gateway,
// compiled into the binary, holding no data. A browser cannot put a bearer
// token on a page it navigates to, so these are served without
// credentials (the Host and Origin checks still hold); every piece of data
// the page then shows comes from the API and its live stream, which
// require them (H4).
func consoleFile(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && console.IsFile(r.URL.Path)
}

// refuse answers a refused request, counts it and logs it (rate-limited:
// a scan or a page retrying in a loop does not flood the log).
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	g.refused.WithLabelValues(reason).Inc()
	g.warn("admin API request refused", "reason", reason, "status", status, "method", r.Method, "path", r.URL.Path,
		"remote", r.RemoteAddr, "detail", msg)
	writeJSON(w, status, apiError{msg})
}

// warn logs at most once every 5 s.
func (g *guard) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := g.lastWarn.Load()
	if now-last < int64(5*time.Second) || !g.lastWarn.CompareAndSwap(last, now) {
		return
	}
	g.logger.Warn(msg, args...)
}

// errorLog counts the TLS handshakes the server refused (a client
// certificate from another CA, plain HTTP on the HTTPS port) and logs
// them rate-limited, instead of one line each on stderr.
type errorLog struct{ g *guard }

func (e errorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if !strings.Contains(msg, "TLS handshake error") {
		e.g.warn("admin API server error", "detail", msg)
		return len(p), nil
	}
	e.g.refused.WithLabelValues("tls_handshake").Inc()
	e.g.warn("admin API connection refused", "reason", "tls_handshake", "detail", msg)
	return len(p), nil
}

// ServerErrorLog is the http.Server ErrorLog for the admin API: TLS
// handshake failures are counted as refusals (reason tls_handshake).
func (a *API) ServerErrorLog() *log.Logger {
	return log.New(errorLog{a.guard}, "", 0)
}

// ServerTLS is the TLS configuration of an HTTPS admin API (nil,
// nil when admin.tls is unset): TLS 1.2 or later, and with tls.ca_file,
// client certificates verified against that CA when sent (token users
// need none; a certificate from another CA fails the handshake).
func ServerTLS(cfg *pb.Admin) (*tls.Config, error) {
	t := cfg.GetTls()
	if t == nil {
		return nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("admin.tls: cert_file and key_file are required")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.CaFile != "" {
		pool, err := certs.LoadPool(t.CaFile)
		if err != nil {
			return nil, fmt.Errorf("admin.tls.ca_file: %w", err)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
