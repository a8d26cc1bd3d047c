package actors

import "github.com/millstream/millstream/internal/config"

// eachFieldLine reads a credentials file line by line: the MQTT password
// file (broker_auth.go) has the shape of the admin API's tokens file
// (actors/admin), so both read it with config.EachFieldLine.
var eachFieldLine = config.EachFieldLine
