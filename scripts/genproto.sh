#!/usr/bin/env bash
# Regenerates the Go code for proto/ with protoc (Debian: apt-get install
# protobuf-compiler libprotobuf-dev) and the protoc-gen-go version pinned in go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go
rm -f proto/millstreampb/*.pb.go
mkdir -p proto/millstreampb
PATH="$bin:$PATH" protoc -I proto \
  --go_out=proto/millstreampb --go_opt=paths=source_relative \
  --go_opt=Mmillstream/v1/value.proto=github.com/millstream/millstream/proto/millstreampb \
  --go_opt=Mmillstream/v1/plan.proto=github.com/millstream/millstream/proto/millstreampb \
  --go_opt=Mmillstream/v1/snapshot.proto=github.com/millstream/millstream/proto/millstreampb \
  --go_opt=Mmillstream/v1/job.proto=github.com/millstream/millstream/proto/millstreampb \
  --go_opt=Mmillstream/v1/state.proto=github.com/millstream/millstream/proto/millstreampb \
  proto/millstream/v1/*.proto
# paths=source_relative keeps the millstream/v1/ folders; flatten them.
mv proto/millstreampb/millstream/v1/*.pb.go proto/millstreampb/
rm -rf proto/millstreampb/millstream
