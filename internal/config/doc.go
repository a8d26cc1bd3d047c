// Package config loads jobs and gateway configurations written as YAML,
// JSON or protobuf text format into their protobuf messages
// (millstreampb.Job, millstreampb.GatewayConfig), and validates them.
//
// All three formats load into the same messages through protojson or
// prototext, so a field means the same everywhere. Errors name the file,
// the line and the field: unknown fields and bad values are errors, never
// ignored.
package config
