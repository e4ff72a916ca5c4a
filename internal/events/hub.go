package events

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// Hub wakes the long-polls waiting on this instance when a notice concerns them. Waiters are
// indexed by room and by user, so a notice costs the waiters it concerns, not all of them.
type Hub struct {
	mu     sync.Mutex
	byRoom map[uuid.UUID]map[*waiter]struct{}
	byUser map[uuid.UUID]map[*waiter]struct{}
}

type waiter struct {
	wake chan struct{}
}

// NewHub returns a hub fed by broker until ctx ends.
func NewHub(ctx context.Context, broker Broker) *Hub {
	h := &Hub{byRoom: map[uuid.UUID]map[*waiter]struct{}{}, byUser: map[uuid.UUID]map[*waiter]struct{}{}}
	broker.Subscribe(ctx, h.deliver)
	return h
}

func (h *Hub) deliver(n Notice) {
	if n.Kind != KindEvent {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.byRoom[n.RoomID] {
		w.signal()
	}
	if n.UserID != nil {
		for w := range h.byUser[*n.UserID] {
			w.signal()
		}
	}
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default: // already signalled
	}
}

// Watch registers interest in rooms and in notices about user; the returned channel receives
// once something may have changed. Register before reading, so that nothing committed
// between the read and the wait is missed; call stop when done.
func (h *Hub) Watch(user uuid.UUID, rooms []uuid.UUID) (wake <-chan struct{}, stop func()) {
	w := &waiter{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	add(h.byUser, user, w)
	for _, r := range rooms {
		add(h.byRoom, r, w)
	}
	h.mu.Unlock()
	return w.wake, func() {
		h.mu.Lock()
		remove(h.byUser, user, w)
		for _, r := range rooms {
			remove(h.byRoom, r, w)
		}
		h.mu.Unlock()
	}
}

func add(index map[uuid.UUID]map[*waiter]struct{}, key uuid.UUID, w *waiter) {
	set, ok := index[key]
	if !ok {
		set = map[*waiter]struct{}{}
		index[key] = set
	}
	set[w] = struct{}{}
}

func remove(index map[uuid.UUID]map[*waiter]struct{}, key uuid.UUID, w *waiter) {
	if set, ok := index[key]; ok {
		delete(set, w)
		if len(set) == 0 {
			delete(index, key)
		}
	}
}

// Wait blocks until wake fires or ctx ends; it reports whether it was woken.
func Wait(ctx context.Context, wake <-chan struct{}) bool {
	select {
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}
