package local

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// prober asks one process's health path. It speaks just enough HTTP/1.1
// itself and keeps its connection between probes: measured with 500 idle
// apps, probing through net/http's Transport with a new connection each
// time was a third of ship's CPU — its goroutines, and above all the
// loopback TCP handshake and teardown, which the kernel charges to ship.
type prober struct {
	what    string // "GET /healthz", for messages
	req     string
	addr    string
	timeout time.Duration
	c       net.Conn // nil between connections
	br      *bufio.Reader
	bad     bool // the health path cannot be sent
}

func newProber(path string, port int, timeout time.Duration) *prober {
	if path == "" {
		path = "/healthz"
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return &prober{what: "GET " + path, addr: addr, timeout: timeout,
		req: "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: ship-health-probe\r\n\r\n",
		bad: strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f })}
}

func (pr *prober) close() {
	if pr.c != nil {
		pr.c.Close()
		pr.c, pr.br = nil, nil
	}
}

// probe asks the health path once and describes the answer for messages
// ("GET /healthz → 503", "GET /healthz: connection refused").
func (pr *prober) probe(ctx context.Context) (bool, string) {
	if pr.bad {
		return false, pr.what + ": the health path has spaces or control characters"
	}
	deadline := time.Now().Add(pr.timeout)
	reused := pr.c != nil
	status, err := pr.roundTrip(ctx, deadline)
	var ne net.Error
	if err != nil && reused && ctx.Err() == nil && !(errors.As(err, &ne) && ne.Timeout()) {
		// The app closed the kept connection (an idle timeout, a restart
		// of its server): ask once more on a new one.
		status, err = pr.roundTrip(ctx, deadline)
	}
	if err != nil {
		return false, pr.what + ": " + shortNetError(err)
	}
	return status >= 200 && status < 300, pr.what + " → " + strconv.Itoa(status)
}

// roundTrip sends the request on the kept connection (or a new one) and
// reads the answer; the connection is kept when the answer allows it.
func (pr *prober) roundTrip(ctx context.Context, deadline time.Time) (int, error) {
	if pr.c == nil {
		d := net.Dialer{Deadline: deadline}
		c, err := d.DialContext(ctx, "tcp", pr.addr)
		if err != nil {
			return 0, err
		}
		pr.c, pr.br = c, bufio.NewReaderSize(c, 1024)
	}
	c := pr.c
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(c, pr.req); err != nil {
		pr.close()
		return 0, err
	}
	resp, err := http.ReadResponse(pr.br, nil)
	if err != nil {
		pr.close()
		return 0, err
	}
	const maxBody = 64 << 10
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody+1))
	if err != nil || n > maxBody || resp.Close || pr.br.Buffered() > 0 {
		pr.close() // not reusable: the body was cut or too long, or the app said close
	}
	return resp.StatusCode, nil
}

// shortNetError says "connection refused" or "i/o timeout" rather than
// the whole "dial tcp 127.0.0.1:PORT: connect: …".
func shortNetError(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed before an answer"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}
