// Package specfuzz is Parlor's spec-driven fuzz suite. Its test walks every operation of the
// contract (api/openapi.yaml, as embedded in gen/api), generates requests from the
// operation's schemas — valid ones, and invalid ones that break one rule of a schema at a
// time — and sends each to one in-process Parlor with a valid bearer token, without one and
// with a garbage one. Every answer must stay within the contract: never a 5xx, a documented
// status whose headers and body match their schemas, and for every 4xx an
// application/problem+json problem with the HTTP status and a code of the closed set.
//
// The generator is seeded (math/rand/v2, -specfuzz.seed), so a failure reproduces. The
// package holds no code besides its test.
package specfuzz
