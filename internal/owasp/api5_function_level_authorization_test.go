// API5:2023 Broken Function Level Authorization.
//
// For Parlor the privileged functions are the admin operations (the `admin` tag, under
// /v1/admin: refunding a top-up, the audit log, a user's wallet and its adjustments, a
// top-up with its provider's state, the ledger audit), granted only by configuration
// (APP_ADMIN_USER_IDS) and never through the API, and the room staff functions (moderate,
// ban, kick, archive, delete), granted by the room's roles.
//
// This file proves the admin side from the contract: TestAdminOperationsAreMarkedAsSuch
// requires every operation under /v1/admin to carry the admin tag and declare 401 and 403
// (and nothing else to carry the tag); TestEveryAdminOperationRefusesEveryoneElse calls each
// admin operation anonymously (401), as a signed-in user who is not an admin — the
// owner of the very top-up included — (403), and as the configured admin (neither), and
// requires a refused call to change nothing (top-ups, the ledger, the audit log); an
// operation added to the contract without a case here fails the test. The staff functions are rows of the
// authorization matrix (API1: TestAuthzMatrix's owner/moderator/member columns), and the
// role hierarchy is internal/httpapi's TestRoomRules.
package owasp_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// adminOperations are the contract's operations tagged admin.
func adminOperations(t testing.TB) []contractOperation {
	t.Helper()
	var ops []contractOperation
	for _, op := range contractOperations(t) {
		if slices.Contains(op.op.Tags, "admin") {
			ops = append(ops, op)
		}
	}
	require.NotEmpty(t, ops, "the contract has no admin operation")
	return ops
}

func TestAdminOperationsAreMarkedAsSuch(t *testing.T) {
	t.Parallel()
	for _, op := range contractOperations(t) {
		admin := slices.Contains(op.op.Tags, "admin")
		require.Equal(t, strings.HasPrefix(op.path, "/v1/admin/"), admin, "%s: the admin tag and the /v1/admin/ prefix go together", op.key())
		if admin {
			require.False(t, op.public(), "%s is an admin operation open to anyone", op.key())
			for _, status := range []string{"401", "403"} {
				require.NotNil(t, op.op.Responses.Value(status), "%s does not declare %s", op.key(), status)
			}
		}
	}
}

func TestEveryAdminOperationRefusesEveryoneElse(t *testing.T) {
	t.Parallel()
	// The admin is an account the operator names in the configuration before starting.
	cfg := parlortest.Config(t)
	admin := parlortest.Start(t, cfg).Register(t, "admin")
	cfg.AdminUserIDs = []uuid.UUID{admin.ID}
	s := parlortest.Start(t, cfg)
	bob, eve := s.Register(t, "bob"), s.Register(t, "eve")
	bought := s.BuyCredits(t, bob, "small")

	// Each admin operation's path, on a real object where it takes one, and its body.
	type call struct{ path, body string }
	calls := map[string]call{
		"POST /v1/admin/topups/{topup_id}/refund":           {"/v1/admin/topups/" + bought.Id.String() + "/refund", `{"reason":"api5"}`},
		"GET /v1/admin/audit-log":                           {"/v1/admin/audit-log", ""},
		"GET /v1/admin/ledger/audit":                        {"/v1/admin/ledger/audit", ""},
		"GET /v1/admin/topups/{topup_id}":                   {"/v1/admin/topups/" + bought.Id.String(), ""},
		"GET /v1/admin/users/{user_id}/wallet":              {"/v1/admin/users/" + bob.ID.String() + "/wallet", ""},
		"POST /v1/admin/users/{user_id}/wallet/adjustments": {"/v1/admin/users/" + bob.ID.String() + "/wallet/adjustments", `{"amount":-100,"reason":"api5"}`},
	}
	// ghost is path with its object replaced by one that does not exist.
	ghost := func(path string) string {
		return strings.NewReplacer(bought.Id.String(), uuid.NewString(), bob.ID.String(), uuid.NewString()).Replace(path)
	}
	state := func() string {
		var st string
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT
			(SELECT string_agg(id::text || ':' || status, ',' ORDER BY id) FROM topups) || '|' ||
			(SELECT count(*) FROM ledger_transactions)::text || '|' ||
			(SELECT count(*) FROM admin_actions)::text`).Scan(&st))
		return st
	}
	for _, op := range adminOperations(t) {
		t.Run(op.key(), func(t *testing.T) {
			c, ok := calls[op.key()]
			require.True(t, ok, "add a path (and a body, if it takes one) for %s to this test", op.key())
			require.Equal(t, op.op.RequestBody == nil, c.body == "", "%s: give this test a body exactly when the operation takes one", op.key())
			before := state()

			res, body := s.Do(t, op.method, c.path, "", nil, http.Header{"Idempotency-Key": {uuid.NewString()}})
			parlortest.RequireProblem(t, res, body, http.StatusUnauthorized, "unauthorized")
			for _, u := range []*parlortest.User{bob, eve} {
				res, body := s.As(t, u, op.method, c.path, c.body)
				parlortest.RequireProblem(t, res, body, http.StatusForbidden, "forbidden")
			}
			require.Equal(t, before, state(), "a refused admin call changed something")
			require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))

			// The admin is let through: to a 404 for an object that does not exist, or to
			// the answer of an operation that names none.
			if ghost := ghost(c.path); ghost != c.path {
				res, body = s.As(t, admin, op.method, ghost, c.body)
				parlortest.RequireProblem(t, res, body, http.StatusNotFound, "not_found")
			} else if op.method == http.MethodGet {
				res, body = s.As(t, admin, op.method, c.path, c.body)
				require.Equal(t, http.StatusOK, res.StatusCode, string(body))
			}
		})
	}
	// And the admin's call on the real object does what it says.
	c := calls["POST /v1/admin/topups/{topup_id}/refund"]
	res, body := s.As(t, admin, "POST", c.path, c.body)
	require.Equal(t, http.StatusOK, res.StatusCode, string(body))
	require.Equal(t, apiclient.TopupStatusRefunded, parlortest.GetTopup(t, bob, bought.Id).Status)
}
