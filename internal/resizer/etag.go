package resizer

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
)

// etagFor is a strong ETag: a hash of the service version (which pins the
// pipeline and libvips behaviour), the canonical options, and the source
// bytes. The same inputs always give byte-identical output from one version,
// so a match can be answered with 304 before any decoding.
func etagFor(version string, canonicalOptions string, src []byte) string {
	h := sha256.New()
	io.WriteString(h, version)
	h.Write([]byte{0})
	io.WriteString(h, canonicalOptions)
	h.Write([]byte{0})
	h.Write(src)
	return `"` + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18]) + `"`
}

// etagMatches implements If-None-Match (RFC 9110 §13.1.2): a list of tags
// or *, compared weakly.
func etagMatches(r *http.Request, etag string) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" {
		return false
	}
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
