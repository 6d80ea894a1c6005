package traffic

// The fast path's HTTP/1.1 head parsing and writing. The parsers accept a
// strict subset of what RFC 9112 allows and return false for the rest,
// which the caller then hands to net/http (requests) or answers with 502
// (responses). FuzzParseRequest and FuzzParseResponse hold them to
// net/http's reading.

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
)

// reqHead is what the fast path needs from a request head.
type reqHead struct {
	head      []byte // the raw head, aliasing the connection's buffer
	method    []byte
	host      []byte
	sticky    []byte // the sticky header's value
	cookie    []byte // the sticky cookie's value
	hasCookie bool
	wantClose bool
}

var (
	errBadResponse = errors.New("malformed response from instance")
	errTruncated   = errors.New("instance closed the connection mid-response")
)

// parseChunkSize reads a chunk-size line ("1a;ext\r\n").
func parseChunkSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	var n int64
	digits := 0
	for _, c := range line[:len(line)-2] {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == ' ' || c == '\t':
			if digits == 0 {
				return 0, false
			}
			return n, true
		default:
			return 0, false
		}
		if digits == 15 {
			return 0, false // larger than any sane chunk
		}
		n = n<<4 | int64(d)
		digits++
	}
	return n, digits > 0
}

// readHead returns the bytes of a message head up to and including the
// empty line, without consuming them. A head longer than the buffer gives
// bufio.ErrBufferFull.
func readHead(br *bufio.Reader) ([]byte, error) {
	from := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf[from:], []byte("\n\r\n")); i >= 0 {
			return buf[:from+i+3], nil
		}
		if i := bytes.Index(buf[from:], []byte("\n\n")); i >= 0 {
			return buf[:from+i+2], nil // bare LF: the parsers refuse it
		}
		from = max(0, len(buf)-2)
		if len(buf) == br.Size() {
			return nil, bufio.ErrBufferFull
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// readResponseHead reads the head of the final response, skipping 1xx
// informational ones (the fast path never asks for an upgrade).
func readResponseHead(br *bufio.Reader) ([]byte, error) {
	for {
		head, err := readHead(br)
		if err != nil {
			return nil, err
		}
		// 101 is never skipped: the fast path asked for no upgrade, so
		// parseResponse refuses it.
		if len(head) > 12 && head[9] == '1' && string(head[9:12]) != "101" && bytes.HasPrefix(head, []byte("HTTP/1.")) {
			br.Discard(len(head))
			continue
		}
		return head, nil
	}
}

// lines calls f with each header line of head (after the first line),
// without its CRLF; it returns false when a line does not end in CRLF.
func forLines(head []byte, f func(line []byte) bool) bool {
	i := bytes.IndexByte(head, '\n')
	if i < 1 || head[i-1] != '\r' {
		return false
	}
	rest := head[i+1:]
	for len(rest) > 2 {
		j := bytes.IndexByte(rest, '\n')
		if j < 1 || rest[j-1] != '\r' {
			return false
		}
		if !f(rest[:j-1]) {
			return false
		}
		rest = rest[j+1:]
	}
	return len(rest) == 2 && rest[0] == '\r'
}

// splitHeader splits "Name: value" into a token name and a trimmed value;
// ok is false for anything net/http should judge instead.
func splitHeader(line []byte) (name, value []byte, ok bool) {
	c := bytes.IndexByte(line, ':')
	if c < 1 {
		return nil, nil, false
	}
	name = line[:c]
	for _, b := range name {
		if !isTokenChar(b) {
			return nil, nil, false
		}
	}
	value = line[c+1:]
	for _, b := range value {
		if b < 0x20 && b != '\t' || b == 0x7f {
			return nil, nil, false
		}
	}
	return name, bytes.Trim(value, " \t"), true
}

func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0
}

// eqFold reports whether b equals lower, ASCII case-insensitively; lower
// must be lower case.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseRequest checks that head is a request the fast path serves and
// fills rh. stickyName is the sticky header's name and cookieName the
// sticky cookie's ("" = none).
func parseRequest(head []byte, stickyName, cookieName string, rh *reqHead) bool {
	*rh = reqHead{head: head}
	eol := bytes.IndexByte(head, '\n')
	if eol < 1 {
		return false
	}
	line := head[:eol-1]
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return false
	}
	rh.method = line[:sp]
	if string(rh.method) != "GET" && string(rh.method) != "HEAD" {
		return false
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 1 || rest[0] != '/' || string(rest[sp+1:]) != "HTTP/1.1" {
		return false
	}
	for _, b := range rest[:sp] {
		if b <= 0x20 || b >= 0x7f {
			return false
		}
	}
	hosts := 0
	return forLines(head, func(l []byte) bool {
		name, value, ok := splitHeader(l)
		if !ok {
			return false
		}
		switch {
		case eqFold(name, "host"):
			hosts++
			rh.host = value
		case eqFold(name, "content-length"):
			if string(value) != "0" {
				return false
			}
		case eqFold(name, "transfer-encoding"), eqFold(name, "expect"), eqFold(name, "upgrade"):
			return false
		case eqFold(name, "accept") && bytes.Contains(bytes.ToLower(value), []byte("text/event-stream")):
			// An event stream can stay silent for long: net/http notices
			// a client that left while the fast path would not.
			return false
		case eqFold(name, "connection"):
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case eqFold(tok, "close"):
					rh.wantClose = true
				case eqFold(tok, "keep-alive"), len(tok) == 0:
				default:
					return false // upgrade, or hop-by-hop headers to strip
				}
			}
		}
		if stickyName != "" && len(name) == len(stickyName) && bytes.EqualFold(name, []byte(stickyName)) && len(value) > 0 && rh.sticky == nil {
			rh.sticky = value
		}
		if cookieName != "" && !rh.hasCookie && eqFold(name, "cookie") {
			rh.cookie, rh.hasCookie = findCookie(value, cookieName)
		}
		return true
	}) && hosts == 1
}

// findCookie returns the value of the cookie called name in a Cookie
// header value ("a=1; b=2"), as net/http's Request.Cookie reads it.
func findCookie(header []byte, name string) ([]byte, bool) {
	for len(header) > 0 {
		var part []byte
		part, header, _ = bytes.Cut(header, []byte(";"))
		part = bytes.Trim(part, " \t")
		k, v, ok := bytes.Cut(part, []byte("="))
		if !ok || string(k) != name {
			continue
		}
		if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return nil, false
}

// dropRequestHeader reports headers the router does not forward: hop-by-hop
// ones, and X-Forwarded-* / Forwarded, which the router sets itself (it is
// the edge: what clients send there is not trusted).
func dropRequestHeader(name []byte) bool {
	switch len(name) {
	case 2:
		return eqFold(name, "te")
	case 7:
		return eqFold(name, "trailer")
	case 9:
		return eqFold(name, "forwarded")
	case 10:
		return eqFold(name, "connection") || eqFold(name, "keep-alive")
	case 15:
		return eqFold(name, "x-forwarded-for")
	case 16:
		return eqFold(name, "proxy-connection") || eqFold(name, "x-forwarded-host")
	case 17:
		return eqFold(name, "x-forwarded-proto")
	case 19:
		return eqFold(name, "proxy-authorization")
	}
	return false
}

// appendBackendRequest writes the request as it goes to the instance.
func (fc *fastConn) appendBackendRequest(out []byte, rh *reqHead) []byte {
	eol := bytes.IndexByte(rh.head, '\n')
	out = append(out, rh.head[:eol+1]...)
	forLines(rh.head, func(l []byte) bool {
		name, _, _ := splitHeader(l)
		if !dropRequestHeader(name) {
			out = append(out, l...)
			out = append(out, '\r', '\n')
		}
		return true
	})
	out = append(out, "X-Forwarded-For: "...)
	out = append(out, fc.clientIP...)
	out = append(out, "\r\nX-Forwarded-Host: "...)
	out = append(out, rh.host...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
	return out
}

// respHead is what the fast path needs from a response head.
type respHead struct {
	status        int
	contentLength int64 // -1 when absent
	chunked       bool
	close         bool // the instance will close the connection
	http10        bool
	hopByHop      [][]byte // header names listed in Connection
}

// parseResponse checks an instance's response head.
func parseResponse(head []byte, rs *respHead) bool {
	*rs = respHead{contentLength: -1}
	if len(head) < 16 || !bytes.HasPrefix(head, []byte("HTTP/1.")) || head[8] != ' ' {
		return false
	}
	switch head[7] {
	case '1':
	case '0':
		rs.http10 = true
	default:
		return false
	}
	code, err := strconv.Atoi(string(head[9:12]))
	if err != nil || code < 200 || code > 999 {
		return false
	}
	eol := bytes.IndexByte(head, '\n')
	if eol < 13 || head[eol-1] != '\r' {
		return false
	}
	if reason := head[12 : eol-1]; len(reason) > 0 {
		if reason[0] != ' ' {
			return false
		}
		for _, b := range reason {
			if b < 0x20 && b != '\t' || b == 0x7f {
				return false
			}
		}
	}
	rs.status = code
	return forLines(head, func(l []byte) bool {
		name, value, ok := splitHeader(l)
		if !ok {
			return false
		}
		switch {
		case eqFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok || (rs.contentLength >= 0 && rs.contentLength != n) {
				return false
			}
			rs.contentLength = n
		case eqFold(name, "transfer-encoding"):
			if !eqFold(value, "chunked") || rs.chunked {
				return false
			}
			rs.chunked = true
		case eqFold(name, "connection"):
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case eqFold(tok, "close"):
					rs.close = true
				case eqFold(tok, "keep-alive"), len(tok) == 0,
					// The framing the router passes on stays, whatever Connection says.
					eqFold(tok, "content-length"), eqFold(tok, "transfer-encoding"):
				default:
					// A header the instance marks hop-by-hop: not passed on.
					rs.hopByHop = append(rs.hopByHop, tok)
				}
			}
		}
		return true
	}) && !(rs.chunked && rs.contentLength >= 0)
}

// appendResponseHead writes the response head as the client gets it:
// HTTP/1.1, hop-by-hop headers dropped, X-Ship-Track added, and
// "Connection: close" when the body ends with the connection.
func appendResponseHead(out, head []byte, rs *respHead, track, setCookie string, closing bool) []byte {
	eol := bytes.IndexByte(head, '\n')
	out = append(out, "HTTP/1.1"...)
	out = append(out, head[8:eol+1]...)
	forLines(head, func(l []byte) bool {
		name, _, _ := splitHeader(l)
		switch {
		case eqFold(name, "connection"), eqFold(name, "keep-alive"), eqFold(name, "proxy-connection"),
			eqFold(name, "x-ship-track"), listed(rs.hopByHop, name):
		default:
			out = append(out, l...)
			out = append(out, '\r', '\n')
		}
		return true
	})
	if setCookie != "" {
		out = append(out, "Set-Cookie: "...)
		out = append(out, setCookie...)
		out = append(out, '\r', '\n')
	}
	out = append(out, TrackHeader+": "...)
	out = append(out, track...)
	if closing {
		out = append(out, "\r\nConnection: close"...)
	}
	return append(out, "\r\n\r\n"...)
}

// parseLength reads a Content-Length: digits only (no sign, no spaces).
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func listed(names [][]byte, name []byte) bool {
	for _, n := range names {
		if bytes.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// appendErrorResponse writes a complete JSON error response.
func appendErrorResponse(out []byte, status int, reason, code, msg string) []byte {
	body, _ := jsonError(code, msg)
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, ' ')
	out = append(out, reason...)
	out = append(out, "\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n\r\n"...)
	return append(out, body...)
}
