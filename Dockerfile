# One image for every function, the gateway, the worker and the migration step.
# A function container runs `lambda-entry <handler>` (the command names the handler, as in
# a Lambda image config); the others override the entry point with node and their bundle.
#
# Base images are build arguments pinned by tag, so the same file builds against a local
# stand-in (test/containers/run.ts builds it against a Debian minbase plus Node 24).
# The Dockerfile works with BuildKit and with the classic builder alike.
ARG BUILD_IMAGE=node:24.21.0-bookworm
ARG RUNTIME_IMAGE=node:24.21.0-bookworm-slim

FROM ${BUILD_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# The runtime client compiles curl, aws-lambda-cpp and a Node addon from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      autoconf automake ca-certificates cmake curl g++ libtool make python3 xz-utils \
 && rm -rf /var/lib/apt/lists/*
# node-gyp builds against this image's own Node headers instead of downloading them.
ENV npm_config_nodedir=/usr/local

WORKDIR /ric
ARG RIC_VERSION=4.0.2
RUN printf '{"private":true,"allowScripts":{"aws-lambda-ric":true}}\n' > package.json \
 && npm install --no-audit --no-fund --omit=dev "aws-lambda-ric@${RIC_VERSION}" \
 && test -f node_modules/aws-lambda-ric/rapid-client.node \
 && rm -rf node_modules/aws-lambda-ric/deps node_modules/aws-lambda-ric/src \
 && npm cache clean --force

WORKDIR /src
COPY package.json package-lock.json ./
# Install scripts stay off: the bundles need none, and the native packages shipped in the
# image load their prebuilt binaries without one.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN node esbuild.config.ts /out/task \
 && mkdir -p /out/bin \
 && cp infra/lambda-entry.sh /out/bin/lambda-entry \
 && chmod 0755 /out/bin/lambda-entry

# The Runtime Interface Emulator, for running a function container outside Lambda.
# Fetched at a pinned release and checked against its sha256; the build stops when the
# checksum for this architecture is not set. INSTALL_RIE=false leaves it out (the image
# then runs only where something else serves the Runtime API, as in Lambda).
ARG INSTALL_RIE=true
ARG RIE_VERSION=v1.37
ARG RIE_SHA256_X86_64=
ARG RIE_SHA256_ARM64=
RUN if [ "$INSTALL_RIE" = true ]; then \
      case "$(uname -m)" in \
        x86_64) asset=aws-lambda-rie-x86_64; sum="$RIE_SHA256_X86_64" ;; \
        aarch64) asset=aws-lambda-rie-arm64; sum="$RIE_SHA256_ARM64" ;; \
        *) echo "no RIE build for $(uname -m)" >&2; exit 1 ;; \
      esac; \
      if [ -z "$sum" ]; then \
        echo "set RIE_SHA256_X86_64 / RIE_SHA256_ARM64 for RIE $RIE_VERSION (see RUNBOOK.md, "Building the image"), or build with INSTALL_RIE=false" >&2; \
        exit 1; \
      fi; \
      curl --fail --silent --show-error --location --proto '=https' \
        --output /out/bin/aws-lambda-rie \
        "https://github.com/aws/aws-lambda-runtime-interface-emulator/releases/download/${RIE_VERSION}/${asset}"; \
      echo "$sum  /out/bin/aws-lambda-rie" | sha256sum --check --strict; \
      chmod 0755 /out/bin/aws-lambda-rie; \
    fi

FROM ${RUNTIME_IMAGE} AS runtime
# Only what runs: no package manager for Node, no headers, no setuid or setgid bit
# anywhere, and a user with uid 1000 (the official Node image has one already).
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
      /usr/local/include/node /usr/local/share/doc/node \
 && find / -xdev -type f -perm /6000 -exec chmod a-s {} + \
 && if ! getent passwd 1000 >/dev/null; then \
      groupadd --gid 1000 app \
      && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
           --shell /usr/sbin/nologin app; \
    fi

COPY --from=build /ric/node_modules/aws-lambda-ric /opt/ric/node_modules/aws-lambda-ric
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/task /var/task

ENV NODE_ENV=production \
    LAMBDA_TASK_ROOT=/var/task \
    NODE_OPTIONS=--enable-source-maps \
    HOME=/tmp
WORKDIR /var/task
# Everything above belongs to root: the service can read its code, never change it.
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lambda-entry"]
CMD ["functions/health/index.handler"]
