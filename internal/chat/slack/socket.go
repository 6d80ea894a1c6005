package slack

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// slogAdapter lets slack-go's socketmode client log through our logger.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Output(_ int, s string) error {
	a.l.Debug(s)
	return nil
}

// runSocket holds a Socket Mode connection (reconnecting as slack-go does)
// and handles commands and button presses exactly as the HTTP endpoints do,
// acknowledging each envelope over the socket.
func (b *Bot) runSocket(ctx context.Context) error {
	api := slackapi.New(b.cfg.BotToken,
		slackapi.OptionAppLevelToken(b.cfg.AppToken),
		slackapi.OptionAPIURL(b.cfg.APIURL),
		slackapi.OptionHTTPClient(b.cfg.HTTPClient))
	sm := socketmode.New(api,
		socketmode.OptionLog(slogAdapter{b.log.With("part", "socketmode")}),
		socketmode.OptionDialer(&websocket.Dialer{HandshakeTimeout: 10 * time.Second, WriteBufferSize: 32 << 10}))
	errc := make(chan error, 1)
	go func() { errc <- sm.RunContext(ctx) }()
	var acks sync.WaitGroup // owns the per-envelope goroutines
	defer acks.Wait()
	for {
		select {
		case <-ctx.Done():
			<-errc
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("slack socket mode: %w", err)
		case evt := <-sm.Events:
			b.socketEvent(ctx, sm, evt, &acks)
		}
	}
}

func (b *Bot) socketEvent(ctx context.Context, sm *socketmode.Client, evt socketmode.Event, acks *sync.WaitGroup) {
	switch evt.Type {
	case socketmode.EventTypeConnected:
		b.log.Info("socket mode connected")
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth, socketmode.EventTypeIncomingError:
		b.log.Warn("socket mode trouble", "type", evt.Type)
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slackapi.SlashCommand)
		if !ok || evt.Request == nil {
			return
		}
		env := evt.Request.EnvelopeID
		// handleSlash may wait up to AckBudget; answer each envelope on its
		// own goroutine so one slow read does not hold up the next.
		acks.Go(func() {
			m := b.handleSlash(ctx, slashFromAPI(cmd))
			if err := sm.AckCtx(ctx, env, m); err != nil {
				b.log.Warn("socket mode ack failed", "err", err)
			}
		})
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slackapi.InteractionCallback)
		if evt.Request == nil {
			return
		}
		if err := sm.AckCtx(ctx, evt.Request.EnvelopeID, nil); err != nil {
			b.log.Warn("socket mode ack failed", "err", err)
		}
		if !ok {
			return
		}
		p, err := pressFrom(cb)
		if err != nil {
			b.log.Info("interaction ignored", "err", err)
			return
		}
		b.handlePress(p)
	case socketmode.EventTypeEventsAPI:
		if evt.Request != nil {
			_ = sm.AckCtx(ctx, evt.Request.EnvelopeID, nil)
		}
	}
}
