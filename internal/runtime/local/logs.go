package local

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/runtime"
)

// Each instance incarnation (one slot running one version) writes
//   logs/<app>/<env>/<stem>.stdout  .stderr   written by the process itself
//   logs/<app>/<env>/<stem>.ship              lifecycle notes, "RFC3339Nano text"
//   logs/<app>/<env>/<stem>.meta              JSON: which instance and version
// Ship tails the first two into a ring of recent lines; times are when ship
// read a line (the process writes plain text).

const keptIncarnations = 64 // per app and env, stopped ones beyond are deleted

type logMeta struct {
	App      string        `json:"app"`
	Env      string        `json:"env"`
	Track    runtime.Track `json:"track"`
	Instance string        `json:"instance"` // e.g. "stable-0"
	Version  string        `json:"version"`
	Stem     string        `json:"stem"`
	Created  time.Time     `json:"created"`
}

// instLog is the output of one instance incarnation.
type instLog struct {
	meta    logMeta
	dir     string
	maxSize int64

	mu         sync.Mutex
	ring       []runtime.LogLine
	next       int // ring write position once full
	cap        int
	off        map[string]int64
	partial    map[string][]byte
	lastStderr string
	finished   bool
}

func (l *instLog) path(stream string) string {
	return filepath.Join(l.dir, l.meta.Stem+"."+stream)
}

func (l *instLog) add(line runtime.LogLine) {
	if len(l.ring) < l.cap {
		l.ring = append(l.ring, line)
		return
	}
	l.ring[l.next] = line
	l.next = (l.next + 1) % l.cap
}

func (l *instLog) snapshot() []runtime.LogLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]runtime.LogLine, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	return append(out, l.ring[:l.next]...)
}

// note records a lifecycle event in the ring and the .ship file.
func (l *instLog) note(format string, args ...any) {
	now := time.Now()
	text := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.add(runtime.LogLine{Time: now, Instance: l.meta.Instance, Version: l.meta.Version, Stream: "ship", Text: text})
	l.mu.Unlock()
	f, err := os.OpenFile(l.path("ship"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", now.UTC().Format(time.RFC3339Nano), strings.ReplaceAll(text, "\n", " "))
}

// poll reads what the process wrote since the last call and rotates a
// stream file that grew past maxSize (copy to .1, truncate; the process
// writes with O_APPEND so it continues at the new end). It reports whether
// there was anything new.
func (l *instLog) poll() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	read := false
	for _, stream := range []string{"stdout", "stderr"} {
		read = l.readStream(stream) || read
	}
	return read
}

// Tailing: a log is read every tailFast while its process writes, and
// less often (up to tailSlow) while it is quiet, so an idle instance costs
// ship almost nothing; Logs reads the live logs first, so what it returns
// is never behind.
const (
	tailFast = 200 * time.Millisecond
	tailSlow = 30 * time.Second
)

// tail polls l until done closes, then once more.
func (l *instLog) tail(done <-chan struct{}) {
	delay := tailFast
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			if l.poll() {
				delay = tailFast
			} else {
				delay = min(2*delay, tailSlow)
			}
			timer.Reset(delay)
		case <-done:
			l.poll()
			return
		}
	}
}

func (l *instLog) readStream(stream string) (read bool) {
	name := l.path(stream)
	// One stat, not open+fstat+close, when nothing was written: the common
	// case of an idle instance.
	if fi, err := os.Stat(name); err != nil || fi.Size() == l.off[stream] && l.off[stream] <= l.maxSize {
		return false
	}
	f, err := os.Open(name)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	if fi.Size() < l.off[stream] { // truncated behind our back
		l.off[stream] = 0
		l.partial[stream] = nil
	}
	if fi.Size() > l.off[stream] {
		read = true
		start := l.off[stream]
		if fi.Size()-start > l.maxSize { // too far behind: skip to the tail
			start = fi.Size() - l.maxSize
		}
		buf := make([]byte, fi.Size()-start)
		n, _ := f.ReadAt(buf, start)
		buf = buf[:n]
		l.off[stream] = start + int64(n)
		data := append(l.partial[stream], buf...)
		now := time.Now()
		if mt := fi.ModTime(); mt.Before(now) {
			now = mt // the last write's time: the poll may come seconds after it
		}
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			l.addText(now, stream, string(data[:i]))
			data = data[i+1:]
		}
		if len(data) > 4096 { // a line without end: keep it as it is
			l.addText(now, stream, string(data))
			data = nil
		}
		l.partial[stream] = append([]byte(nil), data...)
	}
	if l.off[stream] > l.maxSize {
		if err := copyFile(name, name+".1"); err == nil {
			if os.Truncate(name, 0) == nil {
				l.off[stream] = 0
			}
		}
	}
	return read
}

// catchUp reads what a running instance wrote since the last poll.
func (l *instLog) catchUp() {
	l.mu.Lock()
	fin := l.finished
	l.mu.Unlock()
	if !fin {
		l.poll()
	}
}

func (l *instLog) addText(t time.Time, stream, text string) {
	text = strings.TrimRight(text, "\r")
	if stream == "stderr" && strings.TrimSpace(text) != "" {
		l.lastStderr = text
	}
	l.add(runtime.LogLine{Time: t, Instance: l.meta.Instance, Version: l.meta.Version, Stream: stream, Text: text})
}

func (l *instLog) lastStderrLine() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastStderr
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// logStore holds the instance logs of every app and env, live and recent.
type logStore struct {
	cfg  Config
	mu   sync.Mutex
	logs map[[2]string][]*instLog // by app, env; oldest first
}

func newLogStore(cfg Config) *logStore {
	return &logStore{cfg: cfg, logs: map[[2]string][]*instLog{}}
}

func (s *logStore) dirFor(app, env string) string {
	return filepath.Join(logDir(s.cfg.Dir), safeName(app), safeName(env))
}

func (s *logStore) newLog(m logMeta) *instLog {
	return &instLog{meta: m, dir: s.dirFor(m.App, m.Env), maxSize: s.cfg.MaxLogBytes, cap: s.cfg.LogLines,
		off: map[string]int64{}, partial: map[string][]byte{}}
}

// create starts the files of a new incarnation.
func (s *logStore) create(m logMeta) (*instLog, error) {
	l := s.newLog(m)
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(l.path("meta"), b, 0o644); err != nil {
		return nil, err
	}
	s.insert(l)
	return l, nil
}

// attach finds the log of an adopted incarnation (loaded by load) or
// creates one; reading continues at the end of what was loaded.
func (s *logStore) attach(m logMeta) (*instLog, error) {
	s.mu.Lock()
	for _, l := range s.logs[[2]string{m.App, m.Env}] {
		if l.meta.Stem == m.Stem {
			s.mu.Unlock()
			l.mu.Lock()
			l.finished = false
			l.mu.Unlock()
			return l, nil
		}
	}
	s.mu.Unlock()
	return s.create(m)
}

func (s *logStore) insert(l *instLog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{l.meta.App, l.meta.Env}
	s.logs[k] = append(s.logs[k], l)
	s.pruneLocked(k)
}

// finish marks l stopped so it may be pruned later.
func (s *logStore) finish(l *instLog) {
	l.mu.Lock()
	l.finished = true
	l.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked([2]string{l.meta.App, l.meta.Env})
}

func (s *logStore) pruneLocked(k [2]string) {
	ls := s.logs[k]
	excess := len(ls) - keptIncarnations
	if excess <= 0 {
		return
	}
	kept := ls[:0]
	for _, l := range ls {
		l.mu.Lock()
		fin := l.finished
		l.mu.Unlock()
		if excess > 0 && fin {
			excess--
			for _, s := range []string{"stdout", "stdout.1", "stderr", "stderr.1", "ship", "meta"} {
				os.Remove(l.path(s))
			}
			continue
		}
		kept = append(kept, l)
	}
	s.logs[k] = kept
}

func (s *logStore) lines(app, env, version string) []runtime.LogLine {
	s.mu.Lock()
	ls := append([]*instLog(nil), s.logs[[2]string{app, env}]...)
	s.mu.Unlock()
	var out []runtime.LogLine
	for _, l := range ls {
		if version != "" && l.meta.Version != version {
			continue
		}
		l.catchUp()
		out = append(out, l.snapshot()...)
	}
	return out
}

// load reads the logs of earlier runs: the last lines of each stream (timed
// by the file's modification time; the process wrote no times) and the
// lifecycle notes with their own times.
func (s *logStore) load() error {
	metas, err := filepath.Glob(filepath.Join(logDir(s.cfg.Dir), "*", "*", "*.meta"))
	if err != nil {
		return err
	}
	var errs []error
	var loaded []*instLog
	for _, mp := range metas {
		b, err := os.ReadFile(mp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var m logMeta
		if err := json.Unmarshal(b, &m); err != nil || m.Stem == "" {
			errs = append(errs, fmt.Errorf("%s: malformed", mp))
			continue
		}
		l := s.newLog(m)
		l.finished = true
		l.loadFiles()
		loaded = append(loaded, l)
	}
	sort.Slice(loaded, func(i, j int) bool { return loaded[i].meta.Created.Before(loaded[j].meta.Created) })
	for _, l := range loaded {
		s.insert(l)
	}
	return errors.Join(errs...)
}

func (l *instLog) loadFiles() {
	var lines []runtime.LogLine
	for _, stream := range []string{"stdout", "stderr"} {
		name := l.path(stream)
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		b, err := readTail(name, 256<<10)
		if err != nil {
			continue
		}
		l.off[stream] = fi.Size()
		for _, text := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if text == "" {
				continue
			}
			if stream == "stderr" {
				l.lastStderr = text
			}
			lines = append(lines, runtime.LogLine{Time: fi.ModTime(), Instance: l.meta.Instance, Version: l.meta.Version, Stream: stream, Text: text})
		}
	}
	if f, err := os.Open(l.path("ship")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ts, text, ok := strings.Cut(sc.Text(), " ")
			t, err := time.Parse(time.RFC3339Nano, ts)
			if !ok || err != nil {
				continue
			}
			lines = append(lines, runtime.LogLine{Time: t, Instance: l.meta.Instance, Version: l.meta.Version, Stream: "ship", Text: text})
		}
		f.Close()
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
	for _, ln := range lines {
		l.add(ln)
	}
}

// readTail returns up to max bytes from the end of a file, starting at a
// line boundary.
func readTail(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	start := fi.Size() - max
	if start < 0 {
		start = 0
	}
	b := make([]byte, fi.Size()-start)
	n, err := f.ReadAt(b, start)
	if err != nil && err != io.EOF {
		return nil, err
	}
	b = b[:n]
	if start > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}

// safeName keeps a name usable as one path element.
func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out == "" || out == "." || out == ".." {
		out = "_" + out
	}
	return out
}
