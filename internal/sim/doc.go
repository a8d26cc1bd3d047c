// Package sim simulates factory devices: temperature, humidity, pressure and
// vibration sensors with drift, noise and spikes, and devices that go
// silent and come back. It publishes their telemetry over MQTT in the IoT
// Hub topic shape (devices/{id}/messages/events/) and reports progress. It
// is the demo's device fleet and the load generator.
package sim
