package parlortest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// The builders below serve every package's end-to-end tests (httpapi's, the OWASP suite's):
// rooms, messages, raw requests as a user, funds, top-ups and signed webhooks.

// CreateRoom makes a room owned by u and returns it.
func CreateRoom(t testing.TB, u *User, name string, visibility apiclient.Visibility) apiclient.Room {
	t.Helper()
	res, err := u.Client.CreateRoomWithResponse(context.Background(), apiclient.CreateRoomJSONRequestBody{Name: name, Visibility: &visibility})
	if err != nil {
		t.Fatalf("create room %q: %v", name, err)
	}
	if res.JSON201 == nil {
		t.Fatalf("create room %q: status %d: %s", name, res.StatusCode(), res.Body)
	}
	return *res.JSON201
}

// Send posts a message as u into room and returns it.
func Send(t testing.TB, u *User, room uuid.UUID, body string) apiclient.Message {
	t.Helper()
	res, err := u.Client.SendMessageWithResponse(context.Background(), room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: body})
	if err != nil {
		t.Fatalf("send %q: %v", body, err)
	}
	if res.JSON201 == nil {
		t.Fatalf("send %q: status %d: %s", body, res.StatusCode(), res.Body)
	}
	return *res.JSON201
}

// JSON renders v as a JSON string (a request body).
func JSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// SendBody is the body of a new message with text.
func SendBody(text string) string {
	return JSON(map[string]string{"client_msg_id": uuid.NewString(), "body": text})
}

// As sends an authenticated raw request as u (body "" sends none) and returns the answer.
// Money-moving POSTs need an Idempotency-Key: a fresh one goes with every request (every
// other operation ignores it).
func (s *Server) As(t testing.TB, u *User, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + u.AccessToken}, "Idempotency-Key": {uuid.NewString()}}
	if body == "" {
		return s.Do(t, method, path, "", nil, h)
	}
	return s.Do(t, method, path, "application/json", strings.NewReader(body), h)
}

// AsOK sends a request as u that must answer status, and returns the body.
func (s *Server) AsOK(t testing.TB, u *User, status int, method, path, body string) []byte {
	t.Helper()
	res, b := s.As(t, u, method, path, body)
	if res.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, status, b)
	}
	return b
}

// RoomState is everything about a room a rejected request must leave alone, read straight
// from the database.
type RoomState struct {
	LastSeq, Events, Messages, Tombstones, Edited, Reactions, Bans, Invites int64
	MemberCount, SlowMode                                                   int
	Name, Topic, Members                                                    string
	Archived, Deleted                                                       bool
}

// RoomState reads room's state.
func (s *Server) RoomState(t testing.TB, room uuid.UUID) RoomState {
	t.Helper()
	var st RoomState
	err := s.Pool.QueryRow(context.Background(), `
SELECT r.last_seq, r.member_count, r.name, r.topic, r.slow_mode_seconds,
       r.archived_at IS NOT NULL, r.deleted_at IS NOT NULL,
       (SELECT count(*) FROM room_events e WHERE e.room_id = r.id),
       (SELECT count(*) FROM messages m WHERE m.room_id = r.id),
       (SELECT count(*) FROM messages m WHERE m.room_id = r.id AND m.deleted_at IS NOT NULL),
       (SELECT count(*) FROM messages m WHERE m.room_id = r.id AND m.edited_at IS NOT NULL),
       (SELECT count(*) FROM reactions x JOIN messages m ON m.id = x.message_id WHERE m.room_id = r.id),
       (SELECT count(*) FROM room_bans b WHERE b.room_id = r.id),
       (SELECT count(*) FROM room_invites i WHERE i.room_id = r.id),
       (SELECT coalesce(string_agg(m.user_id::text || ':' || m.role || ':' || m.read_seq || ':' ||
                                   coalesce(m.muted_until::text, '-'), ',' ORDER BY m.user_id), '')
          FROM room_members m WHERE m.room_id = r.id)
FROM rooms r WHERE r.id = $1`, room).Scan(
		&st.LastSeq, &st.MemberCount, &st.Name, &st.Topic, &st.SlowMode, &st.Archived, &st.Deleted,
		&st.Events, &st.Messages, &st.Tombstones, &st.Edited, &st.Reactions, &st.Bans, &st.Invites, &st.Members)
	if err != nil {
		t.Fatalf("room state of %s: %v", room, err)
	}
	return st
}

// Grant funds u's wallet (an operator adjustment through the ledger).
func (s *Server) Grant(t testing.TB, u *User, credits int64) {
	t.Helper()
	if err := wallet.Grant(context.Background(), s.Pool, "test-grant:"+uuid.NewString(), u.ID, credits, "test funds"); err != nil {
		t.Fatalf("grant %d credits: %v", credits, err)
	}
}

// BalanceOf is u's wallet balance as u reads it.
func BalanceOf(t testing.TB, u *User) int64 {
	t.Helper()
	res, err := u.Client.GetWalletWithResponse(context.Background())
	if err != nil {
		t.Fatalf("get wallet: %v", err)
	}
	if res.JSON200 == nil {
		t.Fatalf("get wallet: status %d: %s", res.StatusCode(), res.Body)
	}
	return res.JSON200.Balance
}

// WebhookSecret is the STRIPE_WEBHOOK_SECRET of test servers, so tests can sign webhooks.
const WebhookSecret = "whsec_test_parlor"

// CreateTopup starts buying package pkg as u (under a fresh Idempotency-Key) and returns
// the pending top-up.
func CreateTopup(t testing.TB, u *User, pkg string) apiclient.Topup {
	t.Helper()
	res, err := u.Client.CreateTopupWithResponse(context.Background(), &apiclient.CreateTopupParams{IdempotencyKey: uuid.NewString()},
		apiclient.CreateTopupJSONRequestBody{PackageId: pkg})
	if err != nil {
		t.Fatalf("create top-up: %v", err)
	}
	if res.JSON201 == nil || res.JSON201.Status != apiclient.TopupStatusPending {
		t.Fatalf("create top-up: status %d, want a pending top-up: %s", res.StatusCode(), res.Body)
	}
	return *res.JSON201
}

// GetTopup reads one of u's top-ups, which must be there.
func GetTopup(t testing.TB, u *User, id uuid.UUID) apiclient.Topup {
	t.Helper()
	res, err := u.Client.GetTopupWithResponse(context.Background(), id)
	if err != nil {
		t.Fatalf("get top-up: %v", err)
	}
	if res.JSON200 == nil {
		t.Fatalf("get top-up: status %d: %s", res.StatusCode(), res.Body)
	}
	return *res.JSON200
}

// BuyCredits runs a sandbox top-up of pkg as u through its checkout page (Pay) and
// returns it, succeeded.
func (s *Server) BuyCredits(t testing.TB, u *User, pkg string) apiclient.Topup {
	t.Helper()
	tp := CreateTopup(t, u, pkg)
	page, err := url.Parse(tp.CheckoutUrl)
	if err != nil {
		t.Fatalf("checkout url %q: %v", tp.CheckoutUrl, err)
	}
	if res, b := s.Do(t, http.MethodPost, page.Path+"/pay", "", nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("pay on the sandbox page: status %d: %s", res.StatusCode, b)
	}
	got := GetTopup(t, u, tp.Id)
	if got.Status != apiclient.TopupStatusSucceeded {
		t.Fatalf("a paid top-up is %s", got.Status)
	}
	return got
}

// SessionOf is the checkout session id stored for a top-up.
func (s *Server) SessionOf(t testing.TB, topup uuid.UUID) string {
	t.Helper()
	var id string
	if err := s.Pool.QueryRow(context.Background(), "SELECT checkout_session_id FROM topups WHERE id = $1", topup).Scan(&id); err != nil {
		t.Fatalf("checkout session of %s: %v", topup, err)
	}
	return id
}

// PaidCheckoutEvent has the sandbox settle topup's checkout as paid without delivering its
// event, and returns the signed-ready checkout.session.completed event Stripe would send
// (id "evt_<random>"), for tests that deliver it themselves.
func (s *Server) PaidCheckoutEvent(t testing.TB, topup uuid.UUID) []byte {
	t.Helper()
	sandbox, ok := s.Topups.Provider().(*payments.Sandbox)
	if !ok {
		t.Fatalf("the provider is %s, not the sandbox", s.Topups.Provider().Name())
	}
	out, err := sandbox.Settle(context.Background(), s.SessionOf(t, topup), true)
	if err != nil {
		t.Fatalf("settle the checkout of %s: %v", topup, err)
	}
	return payments.CheckoutEvent("evt_"+uuid.NewString(), "checkout.session.completed", out.Session, topup, time.Now())
}

// DeliverWebhook posts payload to the Stripe webhook, signed with secret at signedAt, and
// returns the status and body.
func (s *Server) DeliverWebhook(t testing.TB, payload []byte, signedAt time.Time, secret string) (int, []byte) {
	t.Helper()
	res, b := s.Do(t, http.MethodPost, "/v1/webhooks/stripe", "application/json", bytes.NewReader(payload),
		http.Header{"Stripe-Signature": {payments.SignWebhook(payload, secret, signedAt)}})
	return res.StatusCode, b
}
