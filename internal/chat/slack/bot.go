// Package slack is ship's chat front end: /deploy and /ship slash commands
// from Slack (HTTP or Socket Mode) and Mattermost, Block Kit buttons to
// promote, abort and roll back, and one message per release in the app's
// channel, updated as the release moves.
//
// It parses commands with the shared grammar (internal/command), checks
// signatures and channels, says who the user is (slack:U…, mattermost:…)
// and calls the engine, which decides what that user may do
// (internal/authz); Slack user groups are resolved here for that policy. It must never
// make the engine wait: Slack being slow or down costs messages (logged and
// counted), never a rollout. It does not decide anything about releases.
package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	slackapi "github.com/slack-go/slack"
)

// Bot is the Slack/Mattermost front end. Create it with New, serve Handler on
// ship's HTTP address, and run Run for the notifier and Socket Mode.
type Bot struct {
	cfg      Config
	eng      Engine
	log      *slog.Logger
	api      *webAPI
	verifier *Verifier // nil without a signing secret
	groups   *Groups
	notifier *notifier
	messages MessageStore // nil: release messages are remembered in memory only
	replays  ReplayStore  // nil: accepted signatures are remembered in memory only
	reads    statusReads  // concurrent identical status reads share one engine call
	stats    counters

	// Asynchronous work (engine calls, late replies) runs under tasks.
	baseCtx   context.Context
	cancel    context.CancelFunc
	taskSlots chan struct{}
	tasks     sync.WaitGroup
	closeOnce sync.Once
	running   atomic.Bool
}

// New validates cfg and builds a Bot. It starts nothing; see Run.
func New(cfg Config, eng Engine, logger *slog.Logger, opts ...Option) (*Bot, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if eng == nil {
		return nil, errors.New("slack: nil engine")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	b := &Bot{cfg: cfg, eng: eng, log: logger.With("component", "slack")}
	b.api = &webAPI{
		http: cfg.HTTPClient, log: b.log, stats: &b.stats,
		maxAttempts: cfg.MaxAttempts, maxWait: cfg.MaxRetryWait, baseBackoff: 200 * time.Millisecond,
	}
	if cfg.BotToken != "" {
		b.api.client = slackapi.New(cfg.BotToken,
			slackapi.OptionAPIURL(cfg.APIURL),
			slackapi.OptionHTTPClient(cfg.HTTPClient))
	}
	for _, o := range opts {
		o(b)
	}
	if cfg.SigningSecret != "" {
		b.verifier = NewVerifier(cfg.SigningSecret, cfg.Now, b.replays)
	}
	b.groups = newGroups(cfg, b.api)
	b.notifier = newNotifier(b)
	b.baseCtx, b.cancel = context.WithCancel(context.Background())
	b.taskSlots = make(chan struct{}, cfg.MaxInFlight)
	return b, nil
}

// Stats returns the counters so far.
func (b *Bot) Stats() Stats { return b.stats.snapshot() }

// Run follows engine events into channel messages and, with an app token,
// holds the Socket Mode connection. It returns when ctx ends, after the
// work it owns has stopped; asynchronous command work is cancelled then.
func (b *Bot) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("slack: Run called twice")
	}
	if b.baseCtx.Err() != nil {
		return errors.New("slack: Run after Close")
	}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { b.notifier.run(ctx) })
	if b.cfg.SocketMode() {
		wg.Go(func() {
			if err := b.runSocket(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	b.Close()
	wg.Wait()
	return err
}

// Close cancels asynchronous work and waits for it. Handler keeps answering
// (reads and refusals) but starts no new work.
func (b *Bot) Close() {
	b.closeOnce.Do(func() {
		b.cancel()
	})
	b.tasks.Wait()
}

// goAsync runs fn in the background under the bot's lifetime, bounded by
// MaxInFlight. It reports false when the bot is full or closing.
func (b *Bot) goAsync(fn func(ctx context.Context)) bool {
	if b.baseCtx.Err() != nil {
		return false
	}
	select {
	case b.taskSlots <- struct{}{}:
	default:
		b.stats.busy.Add(1)
		return false
	}
	b.tasks.Add(1)
	go func() {
		defer func() { <-b.taskSlots; b.tasks.Done() }()
		ctx, cancel := context.WithTimeout(b.baseCtx, 2*time.Minute)
		defer cancel()
		fn(ctx)
	}()
	return true
}

// respond reaches the user behind r: response_url while it lasts, then an
// ephemeral message with the bot token, else a logged loss.
func (b *Bot) respond(ctx context.Context, r *responder, m message) {
	if r == nil {
		return
	}
	if m.ResponseType == "" {
		m.ResponseType = slackapi.ResponseTypeEphemeral
	}
	if u, ok := r.take(b.cfg.Now()); ok {
		if err := b.api.postResponseURL(ctx, u, m); err == nil {
			return
		}
	}
	if r.channel == "" || r.user == "" || b.api.client == nil {
		b.stats.slackFailures.Add(1)
		b.log.Warn("reply lost: response_url used up and no bot token or channel", "user", r.user, "channel", r.channel)
		return
	}
	if m.ResponseType == slackapi.ResponseTypeInChannel {
		if _, err := b.api.post(ctx, r.channel, m); err != nil {
			b.log.Warn("reply lost", "user", r.user, "channel", r.channel, "err", err)
		}
		return
	}
	if err := b.api.postEphemeral(ctx, r.channel, r.user, m); err != nil {
		b.log.Warn("reply lost", "user", r.user, "channel", r.channel, "err", err)
	}
}

// Handler serves POST /slack/commands and POST /slack/interactions.
func (b *Bot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /slack/commands", b.authenticate(http.HandlerFunc(b.serveCommand)))
	mux.Handle("POST /slack/interactions", b.authenticate(http.HandlerFunc(b.serveInteraction)))
	return mux
}

func (b *Bot) String() string { return fmt.Sprintf("slack bot (socket mode %v)", b.cfg.SocketMode()) }
