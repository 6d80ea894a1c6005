package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/api"
)

// A client trickling a POST body one byte per 200ms is cut off at the body
// read deadline (408 and the connection closed), while an SSE stream (a
// GET) outlives that deadline.
func TestTrickledBodyIsCutOffAtTheDeadlineButStreamsLive(t *testing.T) {
	data, apps := t.TempDir(), t.TempDir()
	writeSpec(t, apps, "web.yaml", appSpec(freePort(t)))
	const deadline = 600 * time.Millisecond
	addr, _ := start(t, Config{Addr: "127.0.0.1:0", DataDir: data, AppsDir: apps, BodyReadTimeout: deadline})
	b, err := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))

	// An SSE stream, opened first, must survive the trickle's deadline.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"version":"v2"}` + strings.Repeat(" ", 200)
	start := time.Now()
	fmt.Fprintf(conn, "POST /v1/apps/web/deploy HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, token, len(body))
	// Trickle in the background; the server's answer is read here.
	go func() {
		for i := 0; i < len(body); i++ {
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // the test's own bound
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to the trickled body: %v after %s", err, time.Since(start))
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	t.Logf("trickled body answered %d %s after %s (deadline %s)", resp.StatusCode, strings.TrimSpace(string(msg)), took, deadline)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if took > deadline+time.Second {
		t.Fatalf("cut off after %s, deadline %s", took, deadline)
	}
	// The connection is closed after the 408 (its body was never read).
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after the 408")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("connection not closed promptly after the 408")
	}

	// The stream is still alive past the deadline: the server still sends
	// on it (a deploy of a version that fails makes events).
	c, _ := api.NewClient(api.ClientConfig{Server: addr, Token: token})
	if _, err := c.Deploy(context.Background(), "web", api.DeployRequest{Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "event:") || strings.HasPrefix(sc.Text(), "data:") {
				got <- sc.Text()
				return
			}
		}
		got <- "stream ended: " + fmt.Sprint(sc.Err())
	}()
	select {
	case line := <-got:
		if strings.HasPrefix(line, "stream ended") {
			t.Fatalf("SSE stream cut: %s", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event on the stream after the deadline")
	}
}
