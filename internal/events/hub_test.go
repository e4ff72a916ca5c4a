package events

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestHubWakesOnlyConcernedWaiters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	broker := NewLocalBroker()
	hub := NewHub(ctx, broker)
	roomA, roomB, ann, bob := uuid.New(), uuid.New(), uuid.New(), uuid.New()

	annWake, stopAnn := hub.Watch(ann, []uuid.UUID{roomA})
	defer stopAnn()
	bobWake, stopBob := hub.Watch(bob, []uuid.UUID{roomB})

	woken := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}
	require.NoError(t, broker.Publish(ctx, Notice{RoomID: roomA, Seq: 1}))
	require.True(t, woken(annWake))
	require.False(t, woken(bobWake), "bob is not in room A")

	// A notice about bob (say, an invitation to room A) wakes bob.
	require.NoError(t, broker.Publish(ctx, Notice{RoomID: roomA, Seq: 2, UserID: &bob}))
	require.True(t, woken(bobWake))
	require.True(t, woken(annWake))

	// After stop, nothing is indexed for bob any more.
	stopBob()
	require.NotContains(t, hub.byUser, bob)
	require.NotContains(t, hub.byRoom, roomB)
}
