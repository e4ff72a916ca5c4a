package realtime

import (
	"context"
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
type writerPool struct {
	mu    sync.Mutex
	more  *sync.Cond
	ready []*conn // sockets with something to write, each at most once (conn.writing)
	next  int     // ready[next:] are still to be taken
	done  bool
}

func newWriterPool(ctx context.Context) *writerPool {
	p := &writerPool{}
	p.more = sync.NewCond(&p.mu)
	for range max(1, runtime.GOMAXPROCS(0)/2) {
		go p.run()
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
