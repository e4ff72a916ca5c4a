package auth

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/apperr"
)

func TestPasswordsHashAndVerify(t *testing.T) {
	t.Parallel()
	p, err := NewPasswords(2)
	require.NoError(t, err)
	ctx := context.Background()
	h, err := p.Hash(ctx, "correct horse")
	require.NoError(t, err)
	ok, err := p.Verify(ctx, "correct horse", h)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = p.Verify(ctx, "wrong horse", h)
	require.NoError(t, err)
	require.False(t, ok)
	// An unknown user (no hash) never matches, whatever the password.
	ok, err = p.Verify(ctx, "", "")
	require.NoError(t, err)
	require.False(t, ok)
}

func TestPasswordsCapConcurrentHashes(t *testing.T) {
	t.Parallel()
	p, err := NewPasswords(2)
	require.NoError(t, err)
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := p.acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
			running.Add(-1)
			release()
		}()
	}
	wg.Wait()
	require.Equal(t, int32(2), peak.Load(), "never more hashes at once than the cap")

	// When every slot stays busy, a caller is told to come back instead of queueing forever.
	p.waitFor = 20 * time.Millisecond
	r1, _ := p.acquire(context.Background())
	r2, _ := p.acquire(context.Background())
	defer r1()
	defer r2()
	_, err = p.Hash(context.Background(), "password1")
	require.Equal(t, apperr.Unavailable, apperr.CodeOf(err))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.waitFor = time.Hour
	_, err = p.Verify(ctx, "password1", "")
	require.ErrorIs(t, err, context.Canceled)
}

func TestParseKeyRing(t *testing.T) {
	t.Parallel()
	ring, err := ParseKeyRing("new:" + "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk" + ", old:" + "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc")
	require.NoError(t, err)
	require.Equal(t, "new", ring.Signer().ID)
	require.Len(t, ring.Keys(), 2)
	_, ok := ring.Lookup("old")
	require.True(t, ok)
	_, ok = ring.Lookup("../../etc/passwd")
	require.False(t, ok)

	for _, bad := range []string{"", "nokid", "k:short", "bad kid!:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk",
		"a:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk,a:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"} {
		_, err := ParseKeyRing(bad)
		require.Error(t, err, bad)
	}
}
