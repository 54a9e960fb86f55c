# shellcheck shell=bash
# Development defaults, sourced by scripts/dev.sh and `just token`.
# Values already set in the environment win. Never use these in production.
: "${JWT_SECRET:=dev-only-jwt-secret-change-me}"
: "${API_ADDR:=127.0.0.1:8080}"
: "${SIGNALWIRE_SIGNING_KEY:=dev-only-signalwire-signing-key}"
: "${ELEVENLABS_WEBHOOK_SECRET:=dev-only-elevenlabs-webhook-secret}"
# Development mode: deliveries may reach local receivers, no provider IP allow lists, and the
# fixed development encryption key (the binaries say so in their first log lines).
: "${WIREHOOK_ENV:=development}"
: "${RUST_LOG:=info}"
export JWT_SECRET API_ADDR SIGNALWIRE_SIGNING_KEY ELEVENLABS_WEBHOOK_SECRET WIREHOOK_ENV RUST_LOG
