package events

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// Hub wakes the long-polls waiting on this instance when a notice concerns them.
type Hub struct {
	mu      sync.Mutex
	waiters map[*waiter]struct{}
}

type waiter struct {
	user  uuid.UUID
	rooms map[uuid.UUID]struct{}
	wake  chan struct{}
}

// NewHub returns a hub fed by broker until ctx ends.
func NewHub(ctx context.Context, broker Broker) *Hub {
	h := &Hub{waiters: map[*waiter]struct{}{}}
	broker.Subscribe(ctx, h.deliver)
	return h
}

func (h *Hub) deliver(n Notice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waiters {
		_, inRoom := w.rooms[n.RoomID]
		if inRoom || (n.UserID != nil && *n.UserID == w.user) {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Watch registers interest in user's rooms (and notices about user); the returned channel
// receives once something may have changed. Register before reading, so that nothing
// committed between the read and the wait is missed; call stop when done.
func (h *Hub) Watch(user uuid.UUID, rooms []uuid.UUID) (wake <-chan struct{}, stop func()) {
	w := &waiter{user: user, rooms: make(map[uuid.UUID]struct{}, len(rooms)), wake: make(chan struct{}, 1)}
	for _, r := range rooms {
		w.rooms[r] = struct{}{}
	}
	h.mu.Lock()
	h.waiters[w] = struct{}{}
	h.mu.Unlock()
	return w.wake, func() {
		h.mu.Lock()
		delete(h.waiters, w)
		h.mu.Unlock()
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
