package traffic

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path serves the common request — a well-formed HTTP/1.1 GET or
// HEAD without a body, upgrade or event stream — by passing bytes
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
	// A client connection keeps a 4 KiB read buffer, as net/http does; a
	// request head larger than that goes to net/http (which allows 1 MiB).
	clientBufSize = 4 << 10
	// An instance's response head must fit this buffer (else 502).
	instanceBufSize = 32 << 10
	// Output buffers are lent per request, so idle client connections
	// hold only their read buffer.
	outBufSize  = 32 << 10
	idleConnTTL = 30 * time.Second // pooled instance connections older than this are not reused
)

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, outBufSize); return &b }}

// errHandoff says the request must be served by net/http.
var errHandoff = errors.New("hand off to net/http")

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
			handed := false
			defer func() {
				// As net/http does: a bug hit by one connection must not
				// take ship down with it.
				if p := recover(); p != nil {
					rt.r.log.Error("router: panic serving a connection", "app", rt.app, "env", rt.env,
						"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					fcs.mu.Lock()
					delete(fcs.conns, fc)
					fcs.mu.Unlock()
					fc.c.Close()
				}
			}()
			handed = fc.serve(hl)
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
	fc.br = bufio.NewReaderSize(fc.c, clientBufSize)
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

// serveOne serves one request. keep reports whether the client connection
// may serve another one.
func (fc *fastConn) serveOne() (keep bool, err error) {
	rt := fc.rt
	buf := outPool.Get().(*[]byte)
	fc.out = (*buf)[:0]
	defer func() {
		*buf = fc.out[:0]
		fc.out = nil
		outPool.Put(buf)
	}()
	head, err := readHead(fc.br)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return false, errHandoff // net/http answers 431
		}
		return false, err
	}
	t := rt.table.Load()
	var rh reqHead
	if !parseRequest(head, t.sticky.Header, t.sticky.Cookie, &rh) {
		return false, errHandoff
	}
	start := time.Now()
	st := &fc.st
	*st = reqState{rt: rt, t: t}
	tt := fc.chooseTrack(t, &rh)
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
	if class < class5xx {
		rt.noteAnswered(st.backend, start.UnixNano())
	}
	return keep && !rh.wantClose, nil
}

// chooseTrack is route.choose for the fast path: sticky header, else
// sticky cookie, else the exact split.
func (fc *fastConn) chooseTrack(t *table, rh *reqHead) *trackTable {
	if rh.sticky != nil {
		return t.available(chooseTrackIdx(fc.rt, t, rh.sticky, true))
	}
	if t.sticky.Cookie != "" {
		fc.st.cookie = true
		if rh.hasCookie {
			fc.st.cookieTrack = cookieTrackName(rh.cookie)
			if i, ok := trackIndex(fc.st.cookieTrack); ok && t.weightOf(i) > 0 && len(t.tracks[i].backends) > 0 {
				return t.tracks[i]
			}
		}
	}
	return t.available(chooseTrackIdx(fc.rt, t, "", false))
}

// cookieTrackName returns the track a cookie value names without
// allocating, or "?" for anything else.
func cookieTrackName(v []byte) string {
	for _, n := range trackNames {
		if string(v) == n {
			return n
		}
	}
	return "?"
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
				bc = &bconn{c: c, br: bufio.NewReaderSize(c, instanceBufSize)}
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
		if !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, errBadResponse) {
			rt.noteUnreachable(st.backend) // refused, reset or closed: the runtime probes it now
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
	setCookie := ""
	if st.cookie && st.cookieTrack != st.track.name {
		setCookie = st.t.setCookie[st.track.idx]
	}
	out := appendResponseHead(fc.out[:0], head, &rs, st.track.name, setCookie, closing)
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
