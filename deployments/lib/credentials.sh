# Shell functions the setup scripts of deployments/compose and
# deployments/kubernetes share (sourced, not run). Each writes files only.

# ms_gossip_key FILE: a random AES-256 gossip key, base64.
ms_gossip_key() {
  head -c 32 /dev/urandom | base64 > "$1"
}

# ms_token BIN NAME ROLE TOKEN_FILE TOKENS_LINES: an admin API bearer token
# for NAME (the token to TOKEN_FILE, for the client) and its line for
# admin.tokens_file appended to TOKENS_LINES (the gateways keep the hash).
ms_token() {
  local out
  out=$("$1" token "$2" --role "$3")
  sed -n "s/^token (shown once; give it to $2): //p" <<<"$out" > "$4"
  tail -n 1 <<<"$out" >> "$5"
}

# ms_mqtt_user BIN USER ROLE PASSWORD_FILE USERS_LINES: a random broker
# password for USER (to PASSWORD_FILE) and its bcrypt line for
# mqtt.password_file appended to USERS_LINES.
ms_mqtt_user() {
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$4"
  "$1" passwd "$2" --role "$3" < "$4" | tail -n 1 >> "$5"
}
