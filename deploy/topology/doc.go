// Package topology holds the multi-node topology test: real meshcast processes (two bridges on
// one shared MQTT subscription, two edges) between a real mosquitto and a real Redis Cluster of
// three masters with one replica each, and the faults the design must survive: an edge killed, a
// Redis master killed, the broker restarted. It has no non-test code; deploy/local starts the same
// topology for people (task cluster:up).
package topology
