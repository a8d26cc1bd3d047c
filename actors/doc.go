// Package actors will hold the protoactor-go layer of the gateway: the
// supervision tree, device actors, partition/query/window actors hosting
// the operators engine, and the MQTT source and sink actors (DESIGN.md
// section 2). It is empty until the gateway runtime lands; the engine it
// will host is operators/exec.
package actors
