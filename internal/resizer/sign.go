package resizer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// Signing: the signature is base64url (no padding) of HMAC-SHA256(key, P),
// where P is the request's escaped path, then "?" and the raw query with every
// s= parameter removed (other parameters keep their order and escaping), or
// the path alone when nothing else remains. It travels as the last query
// parameter s=. Sign and SignURL compute it; `resizer sign` prints a signed
// path.

// Sign returns the signature of pathAndQuery, which must not contain s=.
func Sign(key, pathAndQuery string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(pathAndQuery))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// SignURL returns pathAndQuery with its signature appended as s=.
func SignURL(key, pathAndQuery string) string {
	p := canonicalSigned(pathAndQuery)
	sep := "?"
	if strings.Contains(p, "?") {
		sep = "&"
	}
	return p + sep + "s=" + Sign(key, p)
}

// canonicalSigned drops every s= parameter from a path?query.
func canonicalSigned(pathAndQuery string) string {
	path, query, _ := strings.Cut(pathAndQuery, "?")
	_, rest := splitSignature(query)
	if rest == "" {
		return path
	}
	return path + "?" + rest
}

// splitSignature separates the s= parameter from the rest of a raw query.
func splitSignature(rawQuery string) (sig string, rest string) {
	var kept []string
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		if v, ok := strings.CutPrefix(part, "s="); ok {
			sig = v
			continue
		}
		kept = append(kept, part)
	}
	return sig, strings.Join(kept, "&")
}

// verifySignature checks a GET request; the comparison is constant-time.
func verifySignature(key string, r *http.Request) *apiError {
	sig, rest := splitSignature(r.URL.RawQuery)
	if sig == "" {
		return newError(http.StatusForbidden, codeBadSignature, "this server requires signed URLs: add s=")
	}
	p := r.URL.EscapedPath()
	if rest != "" {
		p += "?" + rest
	}
	want := Sign(key, p)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return newError(http.StatusForbidden, codeBadSignature, "the signature does not match the path and query")
	}
	return nil
}
