package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
)

// fuzzFingerprint is the Idempotency-Key fingerprint of a tip to room with body, and the
// body the handler reads after it.
func fuzzFingerprint(t *testing.T, room string, body []byte) ([]byte, []byte) {
	req := httptest.NewRequest(http.MethodPost, "/v1/rooms/x/tips", bytes.NewReader(body))
	c := echo.New().NewContext(req, httptest.NewRecorder())
	c.SetPath("/v1/rooms/:room_id/tips")
	c.SetParamNames("room_id")
	c.SetParamValues(room)
	fp, err := fingerprint(c)
	require.NoError(t, err)
	rest, err := io.ReadAll(c.Request().Body)
	require.NoError(t, err)
	return fp, rest
}

// FuzzIdempotencyFingerprint checks the fingerprint an Idempotency-Key is bound to: it never
// fails or panics, leaves the body for the handler as it was, ignores JSON spacing and key
// order (a retry may re-serialize), and still tells apart bodies that differ (any two that
// are not both JSON, or are JSON of different shape) and requests to different rooms.
func FuzzIdempotencyFingerprint(f *testing.F) {
	f.Add("r1", []byte(`{"recipient_id":"6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10","amount":5}`), []byte(`{"amount":5,"recipient_id":"6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10"}`))
	f.Add("r1", []byte(`{"amount":5}`), []byte(`{"amount":6}`))
	f.Add("r1", []byte(`{"amount":5,"message":"hi"}`), []byte(`{"amount":5,"message":"hi "}`))
	f.Add("r\x00", []byte(`not json`), []byte(`not json `))
	f.Add("", []byte(``), []byte(`null`))
	f.Add("r", []byte(`[1,2,{"a":[true,false,null]}]`), []byte(`"x"`))
	f.Add("r", []byte(`{"amount":1e400}`), []byte(`{"amount":1.0}`))
	f.Fuzz(func(t *testing.T, room string, a, b []byte) {
		fpA, rest := fuzzFingerprint(t, room, a)
		require.Equal(t, a, rest, "the handler reads the body as sent")
		again, _ := fuzzFingerprint(t, room, a)
		require.Equal(t, fpA, again, "deterministic")
		other, _ := fuzzFingerprint(t, room+"x", a)
		require.NotEqual(t, fpA, other, "another room")

		var va any
		validA := json.Unmarshal(a, &va) == nil
		if validA {
			var spaced bytes.Buffer
			require.NoError(t, json.Indent(&spaced, a, " ", "\t"))
			fp, _ := fuzzFingerprint(t, room, spaced.Bytes())
			require.Equal(t, fpA, fp, "spacing does not matter")
			canon, err := json.Marshal(va)
			require.NoError(t, err)
			fp, _ = fuzzFingerprint(t, room, canon)
			require.Equal(t, fpA, fp, "canonical form")
		}

		fpB, _ := fuzzFingerprint(t, room, b)
		var vb any
		validB := json.Unmarshal(b, &vb) == nil
		switch {
		case !validA && !validB:
			require.Equal(t, bytes.Equal(a, b), bytes.Equal(fpA, fpB), "raw bodies %q %q", a, b)
		case validA && validB:
			// Equal fingerprints mean equal values as Go's JSON decodes them (float64
			// numbers: integers beyond 2^53 collide, which the contract's bounds rule out).
			ca, _ := json.Marshal(va)
			cb, _ := json.Marshal(vb)
			require.Equal(t, bytes.Equal(ca, cb), bytes.Equal(fpA, fpB), "JSON bodies %q %q", a, b)
		}
	})
}
