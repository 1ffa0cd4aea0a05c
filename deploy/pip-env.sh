#!/bin/sh
# Runs a command (pip) with the build's pip settings, used by deploy/Dockerfile only:
# trust the CA bundle given as the build secret `ca_bundle` (a TLS-inspecting proxy),
# and prefer the wheels of the build argument WHEELS_IMAGE, mounted at /wheels.
set -e
if [ -s /run/secrets/ca_bundle ]; then
  export PIP_CERT=/run/secrets/ca_bundle
fi
if ls /wheels/*.whl >/dev/null 2>&1; then
  export PIP_FIND_LINKS=/wheels
fi
exec "$@"
