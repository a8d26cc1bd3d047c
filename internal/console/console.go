package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// SecurityPolicy is the Content-Security-Policy of every console file
// (W2): the page may load scripts, styles and images and open
// connections to its own origin only; no inline script or style
// element, no plugins, no <base>, no framing.
const SecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed static
var static embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// files are the embedded files by name ("index.html", "app.js", ...).
var files = load()

func load() map[string]file {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	out := map[string]file{}
	entries, err := fs.ReadDir(static, "static")
	if err != nil {
		panic("console: embedded files: " + err.Error()) // W1: fixed at build time
	}
	for _, e := range entries {
		ct, ok := types[path.Ext(e.Name())]
		if e.IsDir() || !ok {
			continue
		}
		body, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			panic("console: embedded file " + e.Name() + ": " + err.Error())
		}
		sum := sha256.Sum256(body)
		out[e.Name()] = file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}

// IsFile reports whether urlPath is one of the console's files: "/" (the
// page) or "/console/{name}" of an embedded file.
func IsFile(urlPath string) bool {
	_, ok := lookup(urlPath)
	return ok
}

func lookup(urlPath string) (file, bool) {
	if urlPath == "/" {
		f, ok := files["index.html"]
		return f, ok
	}
	name, ok := strings.CutPrefix(urlPath, "/console/")
	if !ok || name == "index.html" {
		return file{}, false
	}
	f, ok := files[name]
	return f, ok
}

// Handler serves the console's files: GET / is the page, GET
// /console/{name} its scripts, style and icon; anything else is 404.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		SetHeaders(h)
		f, ok := lookup(r.URL.Path)
		if !ok {
			http.Error(w, "no such console file", http.StatusNotFound)
			return
		}
		h.Set("Content-Type", f.contentType)
		// Revalidated on every load: a gateway upgraded in place serves
		// its new files at once.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		if r.Header.Get("If-None-Match") == f.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(f.body)
	})
}

// SetHeaders sets the console's security headers (W2) on h.
func SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", SecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}
