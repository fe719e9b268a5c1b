package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

// Path is where the coordinator serves the dashboard.
const Path = "/ui/"

//go:embed static
var static embed.FS

// contentSecurityPolicy allows only the page's own files and its own API: no inline script
// or style, no other origin, no framing. A job id or an error message shown on the page
// therefore cannot run as script even if the page's escaping missed it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard's files under Path.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time: a programming error
	}
	fileServer := http.StripPrefix(Path[:len(Path)-1], http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// A new binary's files replace the old ones at the next load.
		h.Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	})
}
