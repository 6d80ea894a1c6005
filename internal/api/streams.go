package api

import (
	"context"
	"fmt"
	"net/http"
	"sync"
)

// streams keeps the open event streams per token user, so revoking or
// rotating a user's tokens ends their streams at once, and bounds how
// many are open per user and in total (each holds a goroutine, a
// subscription and a file descriptor shared with the router).
type streams struct {
	perUser, total int

	mu     sync.Mutex
	n      int
	byUser map[string]map[*stream]struct{}
}

type stream struct{ cancel context.CancelFunc }

func newStreams(perUser, total int) *streams {
	return &streams{perUser: perUser, total: total, byUser: map[string]map[*stream]struct{}{}}
}

// open registers a stream of user; the returned context ends when the
// stream is closed by a revocation (or ctx ends), and done unregisters it.
// A full server or user is refused with a 429 *Error.
func (s *streams) open(ctx context.Context, user string) (context.Context, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.total {
		return nil, nil, &Error{Status: http.StatusTooManyRequests, Code: CodeTooMany,
			Message: fmt.Sprintf("ship has %d event streams open, its limit; try again later", s.n)}
	}
	if len(s.byUser[user]) >= s.perUser {
		return nil, nil, &Error{Status: http.StatusTooManyRequests, Code: CodeTooMany,
			Message: fmt.Sprintf("%s already has %d event streams open, the limit per user; close one (another terminal's `ship ... --follow`?) and retry", user, len(s.byUser[user]))}
	}
	sctx, cancel := context.WithCancel(ctx)
	st := &stream{cancel: cancel}
	if s.byUser[user] == nil {
		s.byUser[user] = map[*stream]struct{}{}
	}
	s.byUser[user][st] = struct{}{}
	s.n++
	var once sync.Once
	return sctx, func() {
		once.Do(func() {
			cancel()
			s.mu.Lock()
			defer s.mu.Unlock()
			if _, ok := s.byUser[user][st]; ok {
				delete(s.byUser[user], st)
				s.n--
			}
			if len(s.byUser[user]) == 0 {
				delete(s.byUser, user)
			}
		})
	}, nil
}

// closeUser ends every open stream of user and says how many.
func (s *streams) closeUser(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for st := range s.byUser[user] {
		st.cancel()
		n++
	}
	return n
}

// count reports the open streams (for tests and metrics).
func (s *streams) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
