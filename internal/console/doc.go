// Package console is the gateway's web console: a page, its scripts and
// its style, plain HTML, CSS and JavaScript compiled into the binary
// (embed), with no build step and nothing fetched from elsewhere (the
// plant network has no internet). actors/admin serves it at / and
// /console/{file} beside the API, behind the same guard; the page reads
// the API (GET /v1/jobs/{name}/plan, PUT /v1/jobs, ...) and its live
// stream (GET /v1/console/stream) with the credentials the operator gives
// it. docs/console.md describes the pages.
//
// What it owns: the files under static/ and the headers they are served
// with. It owns no data and no route of the API.
//
// Invariants:
//
//	W1: the files are fixed at build time; the handler serves exactly the
//	    embedded files by name (IsFile says which), nothing else, so a
//	    path that skips authentication for being a console file can reach
//	    no data.
//	W2: every response carries a Content-Security-Policy that allows
//	    scripts, styles and connections to the gateway's own origin only,
//	    no inline script, and no framing (frame-ancestors 'none'), plus
//	    X-Content-Type-Options: nosniff.
//	W3: the scripts put data on the page as text (textContent, attribute
//	    values), never as HTML: device ids, job names and error messages
//	    come from whoever can publish or deploy.
//
// Concurrency: Handler's handler is safe for concurrent use; the files
// are read-only.
package console
