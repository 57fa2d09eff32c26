#!/bin/sh
# The image's entry point, as in Lambda's own base images: the command names the handler
# (`functions/<name>/index.handler`). Without AWS_LAMBDA_RUNTIME_API (a local container),
# the Runtime Interface Emulator serves the Runtime API on :8080 and starts the runtime
# client; with it (Lambda, or a test serving the Runtime API), the client runs directly.
set -eu

if [ "$#" -eq 0 ]; then
  echo "lambda-entry: give the handler as the command, e.g. functions/health/index.handler" >&2
  exit 64
fi
export _HANDLER="$1"
shift

RIC=/opt/ric/node_modules/aws-lambda-ric/index.mjs
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /usr/local/bin/node "$RIC" "$@"
fi
if [ ! -x /usr/local/bin/aws-lambda-rie ]; then
  echo "lambda-entry: AWS_LAMBDA_RUNTIME_API is unset and this image was built without the RIE (INSTALL_RIE=false)" >&2
  exit 65
fi
exec /usr/local/bin/aws-lambda-rie /usr/local/bin/node "$RIC" "$@"
