// Package faults is the fault suite: tests that run Parlor on servers of their own
// (PostgreSQL through pgtest, Redis started by the test) and break them under load, then
// check what clients saw during the outage and that nothing acknowledged was lost.
package faults
