package traffic

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path serves the common request — a well-formed HTTP/1.1 GET or
// HEAD without a body, upgrade or cookie stickiness — by passing bytes
// between the client and a pooled instance connection on one goroutine,
// without net/http's per-request allocations, goroutine hand-offs and
// header maps. Measured on the benchmark machine, net/http's server plus
// ReverseProxy cost about 2.5 times nginx's CPU per request; this path is
// what brings the router within reach of nginx (docs/router.md).
//
// It accepts only a strict subset of HTTP. Anything else (a body, chunked
// or Expect requests, upgrades, absolute-form targets, HTTP/1.0, bare LF,
// obs-fold, unusual Connection tokens, a head larger than the buffer)
// hands the connection, with the bytes already read, to a net/http server
// running the ReverseProxy path, which serves it from then on. So the
// parser here never has to be lenient, and request smuggling defences stay
// net/http's.

const (
	fastBufSize = 16 << 10 // request and response heads larger than this go to net/http / fail
	outBufSize  = 32 << 10
	idleConnTTL = 30 * time.Second // pooled instance connections older than this are not reused
)

// errHandoff says the request must be served by net/http.
var errHandoff = errors.New("hand off to net/http")

// handoffListener feeds connections the fast path gives up on to the
// net/http server.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give passes c to the net/http server; false when it has shut down.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// prefixConn replays bytes the fast path already read.
type prefixConn struct {
	net.Conn
	buf []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// bconn is a keep-alive connection to an instance.
type bconn struct {
	c      net.Conn
	br     *bufio.Reader
	idleAt time.Time
}

// getIdle takes the most recently used idle connection of b, if any.
func (b *backend) getIdle() *bconn {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := len(b.idle); n > 0; n = len(b.idle) {
		bc := b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		if time.Since(bc.idleAt) < idleConnTTL {
			return bc
		}
		bc.c.Close()
	}
	return nil
}

// putIdle keeps bc for reuse unless b is full or gone.
func (b *backend) putIdle(bc *bconn, max int) {
	bc.idleAt = time.Now()
	b.mu.Lock()
	if !b.removed && len(b.idle) < max {
		b.idle = append(b.idle, bc)
		bc = nil
	}
	b.mu.Unlock()
	if bc != nil {
		bc.c.Close()
	}
}

// retire closes b's idle connections; b is no longer an instance.
func (b *backend) retire() {
	b.mu.Lock()
	b.removed = true
	idle := b.idle
	b.idle = nil
	b.mu.Unlock()
	for _, bc := range idle {
		bc.c.Close()
	}
}

// fastConns tracks a route's fast-path connections for graceful shutdown.
type fastConns struct {
	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	shutting atomic.Bool // set under mu; read without it on the hot path
	wg       sync.WaitGroup
}

const (
	connIdle int32 = iota
	connActive
	connClosed
)

// fastConn is one client connection on the fast path.
type fastConn struct {
	rt       *route
	c        net.Conn
	br       *bufio.Reader
	clientIP string
	state    atomic.Int32
	out      []byte
	st       reqState
}

// acceptFast accepts client connections until ln closes.
func (rt *route) acceptFast(ln net.Listener, hl *handoffListener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				rt.r.log.Warn("router accept", "app", rt.app, "env", rt.env, "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			rt.r.log.Error("router accept", "app", rt.app, "env", rt.env, "err", err)
			return
		}
		delay = 0
		fc := &fastConn{rt: rt, c: c}
		if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
			fc.clientIP = host
		}
		fcs := &rt.fast
		fcs.mu.Lock()
		if fcs.shutting.Load() {
			fcs.mu.Unlock()
			c.Close()
			return
		}
		fcs.conns[fc] = struct{}{}
		fcs.wg.Add(1)
		fcs.mu.Unlock()
		go func() {
			defer fcs.wg.Done()
			handed := fc.serve(hl)
			fcs.mu.Lock()
			delete(fcs.conns, fc)
			fcs.mu.Unlock()
			if !handed {
				fc.c.Close()
			}
		}()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// shutdownFast closes idle fast connections and makes active ones close
// after their current response; it returns once all are gone or when
// done closes (then it closes the rest).
func (rt *route) shutdownFast(done <-chan struct{}) {
	fcs := &rt.fast
	fcs.mu.Lock()
	fcs.shutting.Store(true)
	for fc := range fcs.conns {
		if fc.state.CompareAndSwap(connIdle, connClosed) {
			fc.c.Close()
		}
	}
	fcs.mu.Unlock()
	finished := make(chan struct{})
	go func() { fcs.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-done:
		fcs.mu.Lock()
		for fc := range fcs.conns {
			fc.c.Close()
		}
		fcs.mu.Unlock()
		<-finished
	}
}

func (fcs *fastConns) isShutting() bool { return fcs.shutting.Load() }

// serve runs requests on the connection until it closes or is handed to
// net/http (then it returns true and must not close c).
func (fc *fastConn) serve(hl *handoffListener) (handed bool) {
	rt := fc.rt
	cfg := &rt.r.cfg
	fc.br = bufio.NewReaderSize(fc.c, fastBufSize)
	fc.out = make([]byte, 0, outBufSize)
	for {
		fc.c.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		if _, err := fc.br.Peek(1); err != nil {
			return false
		}
		if !fc.state.CompareAndSwap(connIdle, connActive) {
			return false // shutting down
		}
		fc.c.SetReadDeadline(time.Now().Add(cfg.ReadHeaderTimeout))
		keep, err := fc.serveOne()
		if errors.Is(err, errHandoff) {
			fc.c.SetReadDeadline(time.Time{})
			buffered, _ := fc.br.Peek(fc.br.Buffered())
			pc := &prefixConn{Conn: fc.c, buf: append([]byte(nil), buffered...)}
			if hl.give(pc) {
				return true
			}
			return false
		}
		if err != nil || !keep {
			return false
		}
		fc.state.Store(connIdle)
		if rt.fast.isShutting() {
			return false
		}
	}
}

// reqHead is what the fast path needs from a request head.
type reqHead struct {
	head      []byte // the raw head, aliasing the connection's buffer
	method    []byte
	host      []byte
	sticky    []byte
	wantClose bool
}

// serveOne serves one request. keep reports whether the client connection
// may serve another one.
func (fc *fastConn) serveOne() (keep bool, err error) {
	rt := fc.rt
	t := rt.table.Load()
	if t.sticky.Cookie != "" {
		return false, errHandoff // cookies are parsed and set by the net/http path
	}
	head, err := readHead(fc.br)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return false, errHandoff // net/http answers 431
		}
		return false, err
	}
	var rh reqHead
	if !parseRequest(head, t.sticky.Header, &rh) {
		return false, errHandoff
	}
	start := time.Now()
	st := &fc.st
	*st = reqState{rt: rt, t: t}
	tt := t.available(chooseTrackIdx(rt, t, rh.sticky, rh.sticky != nil))
	if tt == nil {
		rt.noBackends.Inc()
		fc.out = appendErrorResponse(fc.out[:0], 503, "Service Unavailable", "no_backends", rt.app+" in "+rt.env+" has no ready instances")
		fc.br.Discard(len(head))
		_, err := fc.c.Write(fc.out)
		return err == nil && !rh.wantClose, err
	}
	st.track, st.backend = tt, tt.pick(nil)
	st.tried = append(st.triedBuf[:0], st.backend)
	first := tt.stats
	first.inFlight.Inc()

	fc.out = fc.appendBackendRequest(fc.out[:0], &rh)
	fc.br.Discard(len(head))
	keep, class := fc.proxy(bytes.Equal(rh.method, []byte("HEAD")))
	first.inFlight.Dec()
	st.track.stats.observe(time.Since(start), class)
	return keep && !rh.wantClose, nil
}

// proxy sends fc.out to an instance, with retries, and copies the answer
// back. It returns whether the client connection may be kept and the
// request's outcome class.
func (fc *fastConn) proxy(isHead bool) (keep bool, class int) {
	st := &fc.st
	rt := fc.rt
	cfg := &rt.r.cfg
	req := fc.out
	var (
		bc   *bconn
		head []byte
	)
	for fresh := false; ; {
		var err error
		reused := false
		if !fresh {
			bc = st.backend.getIdle()
			reused = bc != nil
		}
		fresh = false
		if bc == nil {
			var c net.Conn
			c, err = net.DialTimeout("tcp", st.backend.addr, cfg.DialTimeout)
			if err != nil {
				st.backend.downUntil.Store(time.Now().Add(cfg.DownFor).UnixNano())
			} else {
				bc = &bconn{c: c, br: bufio.NewReaderSize(c, fastBufSize)}
			}
		}
		if err == nil {
			if _, err = bc.c.Write(req); err == nil {
				if cfg.ResponseHeaderTimeout > 0 {
					bc.c.SetReadDeadline(time.Now().Add(cfg.ResponseHeaderTimeout))
				}
				head, err = readResponseHead(bc.br)
				if err == nil && cfg.ResponseHeaderTimeout > 0 {
					bc.c.SetReadDeadline(time.Time{})
				}
			}
			if err != nil {
				bc.c.Close()
				bc = nil
			}
		}
		if err == nil {
			break
		}
		if reused && !errors.Is(err, bufio.ErrBufferFull) {
			// A kept-alive connection the instance had closed: the
			// request is idempotent, so send it again on a new one.
			fresh = true
			continue
		}
		b := st.next()
		if b == nil || errors.Is(err, bufio.ErrBufferFull) || errors.Is(err, errBadResponse) {
			st.failed = true
			rt.r.log.Warn("router: no instance reachable", "app", rt.app, "env", rt.env, "track", st.track.name,
				"version", st.track.version, "instance", st.backend.addr, "attempts", len(st.tried), "err", err)
			fc.out = appendErrorResponse(fc.out[:0], 502, "Bad Gateway", "bad_gateway",
				"no instance of "+rt.app+" in "+rt.env+" could be reached")
			_, werr := fc.c.Write(fc.out)
			return werr == nil, classError
		}
		rt.retries.Inc()
		st.backend = b
		st.tried = append(st.tried, b)
	}

	var rs respHead
	if !parseResponse(head, &rs) {
		bc.c.Close()
		st.failed = true
		fc.out = appendErrorResponse(fc.out[:0], 502, "Bad Gateway", "bad_gateway", "the instance sent a malformed response")
		_, werr := fc.c.Write(fc.out)
		return werr == nil, classError
	}
	st.status = rs.status
	noBody := isHead || rs.status == 204 || rs.status == 304
	untilEOF := !noBody && !rs.chunked && rs.contentLength < 0
	// While the router shuts down, tell the client this is the
	// connection's last answer, as net/http does.
	closing := untilEOF || rt.fast.isShutting()
	out := appendResponseHead(fc.out[:0], head, &rs, st.track.name, closing)
	bc.br.Discard(len(head))

	var err error
	switch {
	case noBody:
		_, err = fc.c.Write(out)
	case rs.chunked:
		out, err = fc.copyChunked(out, bc.br)
	case rs.contentLength >= 0:
		out, err = fc.copyN(out, bc.br, rs.contentLength)
	default:
		out, err = fc.copyUntilEOF(out, bc.br)
	}
	fc.out = out[:0]
	// Bytes beyond the framing (a HEAD answer with a body, a wrong
	// length) would be read as the next answer: such a connection is not
	// reused.
	if err != nil || untilEOF || rs.close || rs.http10 || bc.br.Buffered() > 0 {
		bc.c.Close()
	} else {
		st.backend.putIdle(bc, cfg.MaxIdleConnsPerInstance)
	}
	if err != nil {
		// The answer was cut: by the client (its write failed) or by the
		// instance. Either way the client connection is done.
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "write" {
			return false, classCanceled
		}
		return false, classError
	}
	return !closing, classOf(rs.status)
}

// flush writes out to the client and empties it.
func (fc *fastConn) flush(out []byte) ([]byte, error) {
	if len(out) == 0 {
		return out, nil
	}
	_, err := fc.c.Write(out)
	return out[:0], err
}

// fill reads at most n more bytes of src into out's spare room, first
// writing out to the client when src has nothing buffered (so a stream is
// passed on as it arrives) or out is full.
func (fc *fastConn) fill(out []byte, src *bufio.Reader, n int64) ([]byte, int, error) {
	var err error
	if src.Buffered() == 0 || len(out) == cap(out) {
		if out, err = fc.flush(out); err != nil {
			return out, 0, err
		}
	}
	room := int64(cap(out) - len(out))
	if n > room {
		n = room
	}
	m, rerr := src.Read(out[len(out) : len(out)+int(n)])
	return out[:len(out)+m], m, rerr
}

func (fc *fastConn) copyN(out []byte, src *bufio.Reader, n int64) ([]byte, error) {
	for n > 0 {
		var m int
		var err error
		out, m, err = fc.fill(out, src, n)
		n -= int64(m)
		if err != nil && n > 0 {
			if errors.Is(err, io.EOF) {
				err = errTruncated
			}
			return out, err
		}
	}
	return fc.flush(out)
}

func (fc *fastConn) copyUntilEOF(out []byte, src *bufio.Reader) ([]byte, error) {
	for {
		var err error
		out, _, err = fc.fill(out, src, 1<<30)
		if errors.Is(err, io.EOF) {
			return fc.flush(out)
		}
		if err != nil {
			return out, err
		}
	}
}

// copyChunked passes a chunked body through unchanged, following its
// framing to find where it ends (after the last chunk and trailers).
func (fc *fastConn) copyChunked(out []byte, src *bufio.Reader) ([]byte, error) {
	var err error
	// line reads one CRLF-terminated line of framing into out.
	line := func() ([]byte, error) {
		if src.Buffered() == 0 {
			if out, err = fc.flush(out); err != nil {
				return nil, err
			}
		}
		l, rerr := src.ReadSlice('\n')
		if rerr != nil {
			return nil, errTruncated
		}
		if len(l) < 2 || l[len(l)-2] != '\r' {
			return nil, errBadResponse
		}
		if len(out)+len(l) > cap(out) {
			if out, err = fc.flush(out); err != nil {
				return nil, err
			}
		}
		out = append(out, l...)
		return l, nil
	}
	for {
		l, err := line()
		if err != nil {
			return out, err
		}
		size, ok := parseChunkSize(l)
		if !ok {
			return out, errBadResponse
		}
		if size == 0 {
			// Trailer lines, then the empty line that ends the body.
			for {
				l, err := line()
				if err != nil {
					return out, err
				}
				if len(l) == 2 {
					return fc.flush(out)
				}
			}
		}
		for size > 0 {
			var m int
			out, m, err = fc.fill(out, src, size)
			size -= int64(m)
			if err != nil && size > 0 {
				return out, errTruncated
			}
		}
		if l, err := line(); err != nil {
			return out, err
		} else if len(l) != 2 {
			return out, errBadResponse
		}
	}
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
// fills rh. stickyName is the sticky header's name ("" = none).
func parseRequest(head []byte, stickyName string, rh *reqHead) bool {
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
		if stickyName != "" && len(name) == len(stickyName) && bytes.EqualFold(name, []byte(stickyName)) && len(value) > 0 {
			rh.sticky = value
		}
		return true
	}) && hosts == 1
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
func appendResponseHead(out, head []byte, rs *respHead, track string, closing bool) []byte {
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
