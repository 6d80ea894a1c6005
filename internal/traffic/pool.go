package traffic

import (
	"bufio"
	"net"
	"sync"
	"time"
)

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
