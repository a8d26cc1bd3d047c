package actors

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/millstream/millstream/proto/millstreampb"
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
	g, err := newAdminGuard(AdminSecurity{Hosts: []string{"GW1.plant."}, Origins: []string{"https://ui.plant:8443"}}, nil, nil)
	require.NoError(t, err)
	for host, ok := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "10.0.0.9": true, "localhost:1": true,
		"gw1.plant": true, "ui.plant": true, "evil.example:8080": false, "127.0.0.1.evil.example": false} {
		require.Equal(t, ok, g.hostAllowed(host), host)
	}
	_, err = newAdminGuard(AdminSecurity{Origins: []string{"https://ui.plant/path"}}, nil, nil)
	require.ErrorContains(t, err, "is not an origin")
}

func TestValidDeviceID(t *testing.T) {
	for _, id := range []string{"", "a/b", "+", "#", "a\x00"} {
		require.Error(t, validDeviceID(id), "%q", id)
	}
	require.NoError(t, validDeviceID("press-1.line_2"))
}

// TestFileSinkOwnsOnlyWhatItCreated: the record cannot be forged through
// a file output, a file of output rows from before records is taken
// over, and a foreign path.1 stops rotation instead of being replaced.
func TestFileSinkOwnsOnlyWhatItCreated(t *testing.T) {
	dir := t.TempDir()
	roots, err := NewDataRoots([]string{dir}, nil)
	require.NoError(t, err)
	_, err = prepareJob(roots, fileOutJob(filepath.Join(dir, ".victim.jsonl.millstream")))
	require.ErrorContains(t, err, "reserved")

	victim := filepath.Join(dir, "victim.jsonl")
	require.NoError(t, os.WriteFile(victim, []byte("mine\n"), 0o644))
	require.NoError(t, os.WriteFile(ownRecord(victim), []byte(`{"_id":"0000000000000001"}`+"\n"), 0o644))
	_, err = prepareJob(roots, fileOutJob(victim))
	require.ErrorContains(t, err, "not a millstream file output record")

	legacy := filepath.Join(dir, "legacy.jsonl")
	require.NoError(t, os.WriteFile(legacy, []byte(`{"_id":"00000000000000a1","v":1}`+"\n"), 0o644))
	require.NoError(t, checkOwned(legacy))
	s, err := newFileSink(legacy, 0)
	require.NoError(t, err)
	require.NoError(t, s.close())
	_, err = os.Stat(ownRecord(legacy))
	require.NoError(t, err, "taken over and recorded")

	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	require.ErrorIs(t, checkOwned(empty), errForeignFile, "an empty file could be anybody's")

	path := filepath.Join(dir, "out.jsonl")
	s, err = newFileSink(path, 60)
	require.NoError(t, err)
	require.NoError(t, s.appendLine([]byte(`{"_id":"00000000000000a1","v":1}`+"\n")))
	require.NoError(t, os.WriteFile(path+".1", []byte("foreign\n"), 0o644))
	require.NoError(t, s.appendLine([]byte(`{"_id":"00000000000000a2","v":2}`+"\n")))
	require.NoError(t, s.close())
	b, _ := os.ReadFile(path + ".1")
	require.Equal(t, "foreign\n", string(b))
	b, _ = os.ReadFile(path)
	require.Equal(t, 2, strings.Count(string(b), "\n"), "not rotated: grown past max_bytes")
}

func fileOutJob(path string) *pb.Job {
	return &pb.Job{Name: "j", Outputs: []*pb.JobOutput{{Name: "o", Sink: &pb.JobOutput_File{File: &pb.FileSink{Path: path}}}}}
}

func TestExternalBrokerPasswordReferences(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("from-file\r\n"), 0o600))
	t.Setenv("BROKER_PW_FOR_TEST", "from-env")
	for _, tc := range []struct {
		cfg  *pb.ExternalBroker
		want string
		err  string
	}{
		{&pb.ExternalBroker{Password: "inline"}, "inline", ""},
		{&pb.ExternalBroker{PasswordFile: pw}, "from-file", ""},
		{&pb.ExternalBroker{PasswordEnv: "BROKER_PW_FOR_TEST"}, "from-env", ""},
		{&pb.ExternalBroker{PasswordEnv: "BROKER_PW_UNSET"}, "", "BROKER_PW_UNSET is not set"},
		{&pb.ExternalBroker{PasswordFile: filepath.Join(dir, "none")}, "", "password_file"},
		{&pb.ExternalBroker{Password: "a", PasswordEnv: "BROKER_PW_FOR_TEST"}, "", "give one of"},
	} {
		got, err := brokerPassword(tc.cfg)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}
