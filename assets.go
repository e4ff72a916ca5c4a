// Package parlor embeds the files that ship inside the binary: the API contract and the
// static web assets (docs page, demo client). It lives at the module root because
// //go:embed cannot reach into parent directories.
package parlor

import "embed"

// OpenAPIYAML is the contract exactly as written in api/openapi.yaml.
//
//go:embed api/openapi.yaml
var OpenAPIYAML []byte

// AsyncAPIYAML describes the WebSocket channel (api/asyncapi.yaml).
//
//go:embed api/asyncapi.yaml
var AsyncAPIYAML []byte

// Static holds static/, served at / and /docs/.
//
//go:embed all:static
var Static embed.FS

// LedgerReconciliationSQL is scripts/ledger-reconciliation.sql: the queries that find
// ledger rows breaking an invariant (`parlor ledger check` runs them).
//
//go:embed scripts/ledger-reconciliation.sql
var LedgerReconciliationSQL string
