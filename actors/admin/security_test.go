package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAdminParseTokens(t *testing.T) {
	h := HashToken("mst_x")
	toks, err := ParseTokens([]byte("# comment\n\nops operate " + h + "\n  viewer read " + strings.ToUpper(h) + "  \n"))
	require.NoError(t, err)
	require.Len(t, toks, 2)
	require.Equal(t, "viewer", toks[1].Name)
	require.Equal(t, toks[0].Hash, toks[1].Hash)
	for in, want := range map[string]string{
		"ops operate":                   "line 1: want",
		"ops root " + h:                 `role "root"`,
		"ops read mst_x":                "not a SHA-256",
		"a read " + h + "\na read " + h: `"a" is used twice`,
	} {
		_, err := ParseTokens([]byte(in))
		require.ErrorContains(t, err, want, in)
	}
}

func TestAdminBodyTypeAndRoles(t *testing.T) {
	for _, tc := range []struct {
		method, ct string
		ok         bool
	}{
		{"POST", "application/json", true},
		{"POST", "application/yaml; charset=utf-8", true},
		{"POST", "", false}, // with a body
		{"POST", "empty", true},
		{"POST", "text/plain", false},
		{"POST", "TEXT/PLAIN; charset=utf-8", false},
		{"PUT", "application/x-www-form-urlencoded", false},
		{"PUT", "multipart/form-data; boundary=a", false},
		{"PUT", "", true}, // never a simple request: browsers ask first
		{"DELETE", "", true},
		{"POST", "garbage;;", false},
	} {
		r, _ := http.NewRequest(tc.method, "/", strings.NewReader("x"))
		if tc.ct == "empty" {
			r, _ = http.NewRequest(tc.method, "/", nil)
		} else if tc.ct != "" {
			r.Header.Set("Content-Type", tc.ct)
		}
		require.Equal(t, tc.ok, bodyTypeOK(r), "%s %q", tc.method, tc.ct)
	}
	require.True(t, allows(RoleRead, "GET"))
	require.True(t, allows(RoleRead, "HEAD"))
	require.False(t, allows(RoleRead, "POST"))
	require.False(t, allows("", "GET"), "a certificate without a role")
	require.True(t, allows(RoleOperate, "DELETE"))
	g, err := newGuard(Security{Hosts: []string{"GW1.plant."}, Origins: []string{"https://ui.plant:8443"}}, nil, nil)
	require.NoError(t, err)
	for host, ok := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "10.0.0.9": true, "localhost:1": true,
		"gw1.plant": true, "ui.plant": true, "evil.example:8080": false, "127.0.0.1.evil.example": false} {
		require.Equal(t, ok, g.hostAllowed(host), host)
	}
	_, err = newGuard(Security{Origins: []string{"https://ui.plant/path"}}, nil, nil)
	require.ErrorContains(t, err, "is not an origin")
}

func TestValidDeviceID(t *testing.T) {
	for _, id := range []string{"", "a/b", "+", "#", "a\x00"} {
		require.Error(t, validDeviceID(id), "%q", id)
	}
	require.NoError(t, validDeviceID("press-1.line_2"))
}
