package slack

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
)

// notifier keeps one channel message per release in step with the engine.
//
// It is level-triggered: an event only marks its release dirty; a single
// worker re-reads the release and renders it whole. Bursts coalesce, a lost
// update is repaired by the next one, and the engine's subscription is
// drained without ever waiting on Slack.
type notifier struct {
	b *Bot

	mu       sync.Mutex
	items    map[int64]*tracked
	appQueue []release.Event // app-level events (scale, lock) waiting to be posted
	wake     chan struct{}
	observed atomic.Int64 // events taken off the engine's subscription
}

// tracked is what the notifier knows about one release's message.
type tracked struct {
	id        int64
	dirty     bool
	channel   string // where its message is
	ts        string // its message, once posted
	origin    string // channel of the command that started it (fallback)
	follower  *responder
	told      release.State // last state the follower heard about
	toldStep  int           // and the step, for releases walking --steps
	timeline  []string
	done      bool // terminal state rendered and posted
	lastSent  time.Time
	failures  int
	touchedAt time.Time
	loaded    bool   // the MessageStore was consulted
	saved     string // savedKey of what the MessageStore holds
}

const (
	maxTimeline  = 12
	maxAppQueue  = 256
	maxFailures  = 3
	renderBudget = 10 * time.Second
)

func newNotifier(b *Bot) *notifier {
	return &notifier{b: b, items: map[int64]*tracked{}, wake: make(chan struct{}, 1)}
}

func (n *notifier) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run drains the engine's events and keeps messages up to date until ctx ends.
func (n *notifier) run(ctx context.Context) {
	events, unsubscribe := n.b.eng.Subscribe()
	defer unsubscribe()
	var wg sync.WaitGroup
	wg.Go(func() { n.work(ctx) })
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			n.observe(ev)
		}
	}
}

// observe records an event; it never blocks on Slack.
func (n *notifier) observe(ev release.Event) {
	n.observed.Add(1)
	n.mu.Lock()
	defer n.mu.Unlock()
	// App-level facts (scale, lock) are announced on their own, even when
	// they happen during a release (the engine then links them to it).
	if ev.Type.IsApp() {
		if len(n.appQueue) >= maxAppQueue {
			n.appQueue = n.appQueue[1:]
			n.b.stats.eventsDropped.Add(1)
			n.b.log.Warn("app event dropped: queue full", "app", ev.App, "type", ev.Type)
		}
		n.appQueue = append(n.appQueue, ev)
		n.signal()
	}
	if ev.ReleaseID == 0 {
		return
	}
	t := n.trackLocked(ev.ReleaseID)
	if t == nil {
		return
	}
	// Actions from other front ends (CLI, web, API) show in the timeline;
	// chat presses are noted by the press handler itself.
	if ev.Actor != "" && !strings.HasPrefix(ev.Actor, "slack:") && !strings.HasPrefix(ev.Actor, "mattermost:") && actionEvent(string(ev.Type)) {
		t.addLine(fmt.Sprintf("%s by %s", eventLabel(string(ev.Type)), actorLabel(ev.Actor)))
	}
	t.dirty = true
	n.signal()
}

func actionEvent(typ string) bool {
	for _, s := range []string{"promot", "abort", "rollback", "rolled_back"} {
		if strings.Contains(typ, s) {
			return true
		}
	}
	return false
}

func eventLabel(typ string) string {
	if typ == "release.promoting" {
		return "Promoted"
	}
	s := strings.TrimPrefix(typ, "release.")
	if s == "" {
		return typ
	}
	return strings.ToUpper(s[:1]) + strings.ReplaceAll(s[1:], "_", " ")
}

func (t *tracked) addLine(s string) {
	t.timeline = append(t.timeline, s)
	if len(t.timeline) > maxTimeline {
		t.timeline = t.timeline[len(t.timeline)-maxTimeline:]
	}
}

// trackLocked returns the entry for id, making room if needed; nil when
// every slot holds an unfinished release (the event is counted as dropped).
func (n *notifier) trackLocked(id int64) *tracked {
	if t, ok := n.items[id]; ok {
		return t
	}
	if len(n.items) >= n.b.cfg.MaxTracked {
		// Forget the finished release touched longest ago.
		var oldest *tracked
		for _, t := range n.items {
			if t.done && !t.dirty && (oldest == nil || t.touchedAt.Before(oldest.touchedAt)) {
				oldest = t
			}
		}
		if oldest == nil {
			n.b.stats.eventsDropped.Add(1)
			n.b.log.Warn("release event dropped: too many releases in flight", "release", id)
			return nil
		}
		delete(n.items, oldest.id)
	}
	t := &tracked{id: id, touchedAt: time.Now()}
	n.items[id] = t
	return t
}

// follow links a release to the chat user and channel that started or
// acted on it; the user hears about pauses and the outcome.
func (n *notifier) follow(id int64, origin string, r *responder, line string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.trackLocked(id)
	if t == nil {
		return
	}
	if t.origin == "" {
		t.origin = origin
	}
	if r != nil && t.follower == nil {
		t.follower = r
		t.told = release.Pending
	}
	if line != "" {
		t.addLine(line)
	}
	t.dirty = true
	n.signal()
}

// note adds a line to a release's message ("Promote pressed by alice").
func (n *notifier) note(id int64, line string) { n.follow(id, "", nil, line) }

func (n *notifier) work(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case <-retry.C:
		}
		n.postAppEvents(ctx)
		if next := n.syncDirty(ctx); next > 0 {
			retry.Reset(next)
		}
	}
}

func (n *notifier) postAppEvents(ctx context.Context) {
	n.mu.Lock()
	q := n.appQueue
	n.appQueue = nil
	n.mu.Unlock()
	for _, ev := range q {
		if ctx.Err() != nil {
			return
		}
		ch := n.b.channelFor(ev.App, "")
		if ch == "" || n.b.api.client == nil {
			continue
		}
		text := ":information_source: " + appEventText(ev)
		if _, err := n.b.api.post(ctx, ch, message{Text: string(text)}); err != nil {
			n.b.log.Warn("app event not posted", "app", ev.App, "type", ev.Type, "err", err)
		}
	}
}

// syncDirty renders every dirty release; it returns when to look again for
// releases held back by MinUpdateInterval or failures (0 = not needed).
func (n *notifier) syncDirty(ctx context.Context) time.Duration {
	n.mu.Lock()
	var ids []int64
	for id, t := range n.items {
		if t.dirty {
			ids = append(ids, id)
		}
	}
	n.mu.Unlock()
	slices.Sort(ids)
	var next time.Duration
	for _, id := range ids {
		if ctx.Err() != nil {
			return 0
		}
		if wait := n.sync(ctx, id); wait > 0 && (next == 0 || wait < next) {
			next = wait
		}
	}
	return next
}

// sync brings one release's message up to date.
func (n *notifier) sync(ctx context.Context, id int64) (again time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, renderBudget)
	defer cancel()
	// Clean before reading: an event that lands while this sync reads the
	// release marks the entry dirty again, so its update is not lost
	// (cleaning after the read lost it until the next event).
	n.mu.Lock()
	if t, ok := n.items[id]; ok {
		t.dirty = false
	}
	n.mu.Unlock()
	rel, err := n.b.eng.Release(ctx, engine.System, id)
	if err != nil {
		n.b.log.Warn("release not rendered", "release", id, "err", err)
		return n.failed(id)
	}
	n.load(ctx, id)
	defer n.save(ctx, id)
	n.mu.Lock()
	t, ok := n.items[id]
	if !ok {
		n.mu.Unlock()
		return 0
	}
	if wait := n.b.cfg.MinUpdateInterval - time.Since(t.lastSent); t.ts != "" && wait > 0 && !rel.State.Terminal() {
		t.dirty = true // held back, not done
		n.mu.Unlock()
		return wait
	}
	channel, ts := t.channel, t.ts
	if channel == "" {
		channel = n.b.channelFor(rel.App, t.origin)
	}
	timeline := slices.Clone(t.timeline)
	follower, told, toldStep := t.follower, t.told, t.toldStep
	n.mu.Unlock()

	var st *engine.AppStatus
	if rel.Active() {
		if s, err := n.b.eng.Status(ctx, engine.System, rel.App, rel.Env); err == nil {
			st = &s
		}
	}
	if follower != nil && worthTelling(rel, told, toldStep) {
		n.tellFollower(ctx, id, follower, rel)
	}
	if channel == "" || n.b.api.client == nil {
		n.markSent(id, "", "", rel)
		return 0
	}
	m := releaseMessage(rel, st, timeline)
	if ts == "" {
		ts, err = n.b.api.post(ctx, channel, m)
	} else {
		err = n.b.api.update(ctx, channel, ts, m)
	}
	if err != nil {
		n.b.log.Warn("release message not sent", "release", id, "app", rel.App, "env", rel.Env, "err", err)
		return n.failed(id)
	}
	n.markSent(id, channel, ts, rel)
	return 0
}

func (n *notifier) tellFollower(ctx context.Context, id int64, r *responder, rel release.Release) {
	n.mu.Lock()
	if t, ok := n.items[id]; ok {
		t.told, t.toldStep = rel.State, rel.Step
	}
	n.mu.Unlock()
	n.b.respond(ctx, r, ephemeral(mrkdwnf("%s %s → %s (release #%d): %s", rel.App, rel.Version, rel.Env, rel.ID, stateText(rel))))
}

func (n *notifier) markSent(id int64, channel, ts string, rel release.Release) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.items[id]
	if !ok {
		return
	}
	if channel != "" {
		t.channel, t.ts = channel, ts
	}
	t.lastSent = time.Now()
	t.touchedAt = t.lastSent
	t.failures = 0
	t.done = rel.State.Terminal()
}

// failed keeps a release dirty for a few more tries, then gives up on it
// until its next event (the give-up is already logged and counted).
func (n *notifier) failed(id int64) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.items[id]
	if !ok {
		return 0
	}
	t.failures++
	if t.failures >= maxFailures {
		t.failures = 0
		t.dirty = false
		return 0
	}
	t.dirty = true
	return time.Duration(t.failures) * 2 * time.Second
}

// messageOf reports the channel and timestamp of a release's message (tests).
func (n *notifier) messageOf(id int64) (channel, ts string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t, ok := n.items[id]; ok {
		return t.channel, t.ts
	}
	return "", ""
}

// appEventText is an app-level event in words, naming the actor once. The
// engine's message carries versions and reasons: all of it is escaped.
func appEventText(ev release.Event) markup {
	msg := ev.Message
	if msg == "" {
		msg = eventLabel(strings.TrimPrefix(string(ev.Type), "app.")) + " " + ev.App + " (" + ev.Env + ")"
	}
	switch {
	case ev.Actor == "":
	case strings.Contains(msg, ev.Actor):
		msg = strings.ReplaceAll(msg, ev.Actor, actorLabel(ev.Actor))
	default:
		msg = fmt.Sprintf("%s (%s): %s — by %s", ev.App, ev.Env, msg, actorLabel(ev.Actor))
	}
	return esc(msg)
}

// worthTelling says whether the follower should hear about rel: a pause
// waiting for them, a new step of a walking canary, or the outcome.
// Routine states (pending, promoting) are left to the channel message.
func worthTelling(rel release.Release, told release.State, toldStep int) bool {
	switch {
	case rel.State.Terminal() || rel.State == release.Paused:
		return rel.State != told
	case rel.State == release.Progressing:
		return rel.Step > 0 && (told != release.Progressing || rel.Step != toldStep)
	}
	return false
}
