# Shell functions the setup scripts of deployments/compose and
# deployments/kubernetes share (sourced, not run). They write files only.

# ms_credentials BIN DIR: with the CA in DIR/pki (millstream cert ca),
# makes what a cluster's clients and gateways need besides the gateways'
# own certificates:
#   DIR/client/  ca.crt; admin-ops.crt/.key (admin client, role operate);
#                viewer.token (admin bearer token, role read);
#                device-press-1.crt/.key (a device certificate);
#                press-2.password (a device password)
#   DIR/etc/     gossip.key (AES-256, base64); admin-tokens (the token's
#                hash line); mqtt-users (press-2's bcrypt line)
ms_credentials() {
  local bin=$1 dir=$2 tok
  "$bin" cert admin ops --role operate --dir "$dir/pki"
  "$bin" cert device press-1 --dir "$dir/pki"
  cp "$dir/pki/ca.crt" "$dir/pki/admin-ops.crt" "$dir/pki/admin-ops.key" \
     "$dir/pki/device-press-1.crt" "$dir/pki/device-press-1.key" "$dir/client/"
  head -c 32 /dev/urandom | base64 > "$dir/etc/gossip.key"
  tok=$("$bin" token viewer --role read)
  sed -n 's/^token (shown once; give it to viewer): //p' <<<"$tok" > "$dir/client/viewer.token"
  tail -n 1 <<<"$tok" > "$dir/etc/admin-tokens"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/client/press-2.password"
  "$bin" passwd press-2 --role device < "$dir/client/press-2.password" | tail -n 1 > "$dir/etc/mqtt-users"
}
