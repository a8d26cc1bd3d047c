package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

// TestConsoleFilesAndHeaders: the page and every embedded file are served
// by name with their type and the security headers (W2); nothing else is
// (W1); an unchanged file is not sent again.
func TestConsoleFilesAndHeaders(t *testing.T) {
	h := Handler()
	for path, ct := range map[string]string{"/": "text/html", "/console/app.js": "text/javascript", "/console/editor.js": "text/javascript",
		"/console/style.css": "text/css", "/console/icon.svg": "image/svg+xml"} {
		resp := get(t, h, path)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), ct), "%s: %s", path, resp.Header.Get("Content-Type"))
		require.Equal(t, SecurityPolicy, resp.Header.Get("Content-Security-Policy"))
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
		require.True(t, IsFile(path), path)
		again := get(t, h, path, "If-None-Match", resp.Header.Get("ETag"))
		require.Equal(t, http.StatusNotModified, again.StatusCode, path)
	}
	for _, path := range []string{"/console/", "/console/index.html", "/console/nope.js", "/console/../console/app.js",
		"/console/static/app.js", "/console//app.js", "/index.html", "/v1/jobs", "/console"} {
		require.False(t, IsFile(path), path)
		require.Equal(t, http.StatusNotFound, get(t, h, path).StatusCode, path)
	}
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		require.Contains(t, SecurityPolicy, want)
	}
	require.NotContains(t, SecurityPolicy, "unsafe")
}

// TestConsoleFilesPutDataAsText checks the rules the files must keep (W2,
// W3): no inline script or style and no event handler attribute in the
// page (the policy would block them), nothing loaded from another host
// (the plant network has no internet), and no script API that parses
// HTML or code from a string.
func TestConsoleFilesPutDataAsText(t *testing.T) {
	require.GreaterOrEqual(t, len(files), 10)
	page := string(files["index.html"].body)
	scripts := regexp.MustCompile(`<script[^>]*>([^<]*)`).FindAllStringSubmatch(page, -1)
	require.NotEmpty(t, scripts)
	for _, m := range scripts {
		require.Regexp(t, `\ssrc="/console/[a-z]+\.js"`, m[0], "a script not from a file")
		require.Empty(t, strings.TrimSpace(m[1]), "inline script")
	}
	require.NotRegexp(t, `(?i)\son[a-z]+\s*=`, page, "event handler attribute")
	require.NotRegexp(t, `(?i)\sstyle\s*=|<style`, page, "inline style")
	forbidden := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(['"]on|setAttribute\(['"]style|https?://`)
	for name, f := range files {
		body := string(f.body)
		if name == "icon.svg" {
			body = strings.ReplaceAll(body, `xmlns="http://www.w3.org/2000/svg"`, "")
		}
		require.Empty(t, forbidden.FindAllString(body, -1), name)
	}
	// Every script the page or another script loads is embedded.
	imports := regexp.MustCompile(`(?:from |src=")['"/]*(?:console/|\./)([a-z]+\.js)`)
	for name, f := range files {
		for _, m := range imports.FindAllStringSubmatch(string(f.body), -1) {
			_, ok := files[m[1]]
			require.True(t, ok, "%s loads %s, which is not embedded", name, m[1])
		}
	}
	resp := get(t, Handler(), "/console/app.js")
	body, _ := io.ReadAll(resp.Body)
	require.Contains(t, string(body), "import")
}
